/**
 * Room: bridge/storage. Composition of the storage side: the durable spool (`<dataDir>/spool/`) and
 * the InfluxDB writer draining it, behind the `Storage` interface (the pipeline's durable sink).
 *
 * Loss ledger (docs/operations.md): the metrics add up at every moment to
 *   bridge_samples_received_total = bridge_influx_points_written_total + bridge_samples_rejected_total
 *     + bridge_dead_lettered_points_total + bridge_backlog_points
 * Storage counts what it took on (appended lines, and the samples of messages the pipeline
 * rejected) and what it recovered from the spool at start-up, since this run now answers for it.
 * QoS 0 messages dropped over the rate limit are outside it (never decoded, never taken on); they
 * are counted as messages in bridge_rejected_total{reason="rate_limited"}.
 */
import { join } from 'node:path';
import type { Config } from '../../config.js';
import { ERROR_CODES, TelebridgeError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { Accepted } from '../sink.js';
import { InfluxWriter } from './influx-writer.js';
import { readingToLines, statusToLine } from './line-protocol.js';
import { Spool } from './spool.js';
import type { Storage, StorageReadiness } from './storage.js';

export interface OpenStorageOptions {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Writer backoff bounds, ms (tests shorten them). Defaults: 250 and 30 000. */
  readonly minRetryMs?: number;
  readonly maxRetryMs?: number;
}

/**
 * Opens the spool (recovering what an earlier run left) and starts the writer; undefined when
 * `INFLUX_URL` is unset (the caller says once that storage is off).
 * @example const storage = await openStorage({ config, log, metrics });
 */
export async function openStorage(options: OpenStorageOptions): Promise<Storage | undefined> {
  const { config, metrics } = options;
  if (!config.influx) return undefined;
  const log = options.log.child({ module: 'storage' });
  const refresh = () => {
    metrics.backlog.set(spool.backlogPoints);
    metrics.spoolBytes.set(spool.bytes);
  };
  const spool: Spool = await Spool.open({
    dir: join(config.dataDir, 'spool'),
    maxBytes: config.spool.maxBytes,
    memoryBytes: config.spool.memoryBytes,
    // Counted once per group as it becomes durable (or fails), in the same turn as the backlog.
    onOutcome(lines, error) {
      if (error) metrics.samplesRefused.inc(lines);
      else metrics.samplesReceived.inc(lines);
      refresh();
    },
  });
  metrics.spoolRecovered.inc(spool.backlogPoints);
  metrics.samplesReceived.inc(spool.backlogPoints);
  refresh();
  if (spool.backlogPoints > 0)
    log.info({ points: spool.backlogPoints }, 'spool recovered unconfirmed points');
  const writer = new InfluxWriter({
    config: config.influx,
    spool,
    log,
    metrics,
    deadLetterPath: join(config.dataDir, 'dead-letter.ndjson'),
    onProgress: refresh,
    ...(options.minRetryMs !== undefined ? { minRetryMs: options.minRetryMs } : {}),
    ...(options.maxRetryMs !== undefined ? { maxRetryMs: options.maxRetryMs } : {}),
  });
  writer.start();
  let closing: Promise<void> | undefined;
  const readyBytes = config.spool.maxBytes * config.spool.readyRatio;

  // Not async: appends of one group share the spool's promise (no promise per message); the spool
  // counts through `onOutcome`.
  const append = (lines: readonly string[]): Promise<void> => {
    if (!closing) return spool.append(lines);
    metrics.samplesRefused.inc(lines.length);
    return Promise.reject(new TelebridgeError(ERROR_CODES.storage, 'storage is closing'));
  };

  return {
    durable: true,
    append,
    accept(message: Accepted): Promise<void> {
      return append(
        message.kind === 'telemetry' ? readingToLines(message.reading) : [statusToLine(message.status)],
      );
    },
    rejected(samples: number): void {
      metrics.samplesReceived.inc(samples);
      metrics.samplesRejected.inc(samples);
    },
    readiness(): StorageReadiness {
      const bytes = spool.bytes;
      if (bytes < readyBytes) return { ok: true };
      const why = writer.lastFailure ? `; InfluxDB: ${writer.lastFailure}` : '';
      return {
        ok: false,
        reason: `spool at ${bytes} of ${config.spool.maxBytes} bytes (BRIDGE_SPOOL_MAX_BYTES × BRIDGE_SPOOL_READY_RATIO = ${Math.floor(readyBytes)})${why}`,
      };
    },
    backlogPoints: () => spool.backlogPoints,
    close(graceMs: number): Promise<void> {
      closing ??= (async () => {
        await writer.stop(graceMs);
        await spool.close();
        refresh();
        if (spool.backlogPoints > 0) {
          log.warn(
            { points: spool.backlogPoints },
            'unconfirmed points stay in the spool for the next start',
          );
        }
      })();
      return closing;
    },
  };
}
