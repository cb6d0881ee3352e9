/**
 * Issue 9 point 6: `/live` fan-out across instances. Device → browser latency through Redis with one
 * bridge and with three (browsers spread over the instances, devices on the first: every delivery on
 * the other two crosses Redis). Uses the live-fanout scenario's scale-out hook with a redis-server
 * started here (loopback, free port, no persistence) and stopped by its PID after.
 *
 * Rows: group `live-fanout-scale`, suts `bridge+redis×1` (the baseline) and `bridge+redis×3`; the
 * primary metric is p99 latency. Compare with the `live-fanout` row of the same run for the cost of
 * the Redis hop itself (in-memory broker, no Redis).
 *
 * @example
 * const rows = await scaleFanout(ctx); // then report them with the other scenarios' rows
 */
import { startRedis } from '../test/support/redis.js';
import type { BenchContext, ScenarioOptions, ScenarioResult } from './lib/context.js';
import { liveFanout } from './scenarios/live-fanout.js';

const GROUP = 'live-fanout-scale';

export async function scaleFanout(
  ctx: BenchContext,
  instanceCounts: readonly number[] = [1, 3],
  options: ScenarioOptions = {},
): Promise<ScenarioResult[]> {
  const redis = await startRedis();
  if ('skip' in redis) throw new Error(redis.skip);
  const rows: ScenarioResult[] = [];
  try {
    for (const instances of instanceCounts) {
      ctx.log(`scale-fanout: ${instances} instance(s) on Redis ${redis.url}`);
      const results = await liveFanout.run(ctx, {
        ...options,
        instances,
        redisUrl: redis.url,
        baseline: false,
        group: GROUP,
        sutName: `bridge+redis×${instances}`,
      });
      for (const row of results) {
        rows.push({
          ...row,
          baseline: `bridge+redis×${instanceCounts[0]}`,
          params: { ...row.params, instances, redis: true },
        });
      }
    }
  } finally {
    await redis.stop();
  }
  return rows;
}
