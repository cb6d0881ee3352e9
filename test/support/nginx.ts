/**
 * A real nginx for proxy tests, run from a configuration derived from deploy/nginx.conf (the TLS
 * reverse proxy) or deploy/nginx-lb.conf (the TCP load balancer, stream module): the same file with
 * only addresses, certificate paths and timeouts substituted, each substitution checked to have
 * matched (so a change to the example cannot silently leave the test running something else).
 * nginx runs in the foreground on loopback ports with its prefix in a temp dir; stopped by PID.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { missingService, type RunningProcess, requireBinary, startProcess, tempDir } from './services.js';

export interface DeriveOptions {
  /** Loopback port for the `listen 80` server. */
  readonly httpPort: number;
  /** Loopback port for the `listen 443 ssl` server. */
  readonly httpsPort: number;
  /** `host:port` of the bridge's HTTP listener. */
  readonly upstream: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Replaces every long-lived `proxy_read_timeout`/`proxy_send_timeout` (e.g. `2s`). */
  readonly longTimeout: string;
}

/** Applies one substitution and fails when its pattern did not occur `expected` times. */
function substitute(text: string, pattern: RegExp, replacement: string, expected: number | 'some'): string {
  const count = [...text.matchAll(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`))].length;
  if (expected === 'some' ? count === 0 : count !== expected) {
    throw new Error(`deploy/nginx*.conf changed: ${pattern} matched ${count} times, expected ${expected}`);
  }
  return text.replace(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`), replacement);
}

export function deriveNginxConf(source: string, o: DeriveOptions): string {
  let conf = source;
  conf = substitute(conf, /^(\s*)listen 80;/m, `$1listen 127.0.0.1:${o.httpPort};`, 1);
  conf = substitute(conf, /^(\s*)listen 443 ssl;/m, `$1listen 127.0.0.1:${o.httpsPort} ssl;`, 1);
  conf = substitute(conf, /^(\s*)server 127\.0\.0\.1:8080;/m, `$1server ${o.upstream};`, 1);
  conf = substitute(
    conf,
    /^(\s*)ssl_certificate \/etc\/nginx\/tls\/fullchain\.pem;/m,
    `$1ssl_certificate ${o.certFile};`,
    1,
  );
  conf = substitute(
    conf,
    /^(\s*)ssl_certificate_key \/etc\/nginx\/tls\/privkey\.pem;/m,
    `$1ssl_certificate_key ${o.keyFile};`,
    1,
  );
  conf = substitute(
    conf,
    /^(\s*)proxy_(read|send)_timeout 1h;/m,
    `$1proxy_$2_timeout ${o.longTimeout};`,
    'some',
  );
  // One worker is plenty on loopback, and keeps the test light on a 2-core machine.
  conf = substitute(conf, /^worker_processes auto;/m, 'worker_processes 1;', 1);
  return conf;
}

export interface DeriveLbOptions {
  /** Loopback ports for the `listen 1883` and `listen 8080` servers. */
  readonly mqttPort: number;
  readonly httpPort: number;
  /** The bridges, in the order of `bridge-1`, `bridge-2`, …: their MQTT and HTTP ports on 127.0.0.1. */
  readonly bridges: readonly { readonly mqtt: number; readonly http: number }[];
  /** `load_module` this first (an nginx whose stream module is dynamic, as Debian's). */
  readonly streamModule?: string;
}

/** deploy/nginx-lb.conf with loopback addresses: every `bridge-N` of the file must be given. */
export function deriveLbConf(source: string, o: DeriveLbOptions): string {
  let conf = source;
  conf = substitute(conf, /^(\s*)listen 1883;/m, `$1listen 127.0.0.1:${o.mqttPort};`, 1);
  conf = substitute(conf, /^(\s*)listen 8080;/m, `$1listen 127.0.0.1:${o.httpPort};`, 1);
  o.bridges.forEach((b, i) => {
    conf = substitute(conf, new RegExp(`server bridge-${i + 1}:1883 `), `server 127.0.0.1:${b.mqtt} `, 1);
    conf = substitute(conf, new RegExp(`server bridge-${i + 1}:8080 `), `server 127.0.0.1:${b.http} `, 1);
  });
  if (/bridge-\d+:/.test(conf))
    throw new Error('deploy/nginx-lb.conf names more bridges than the test gives');
  conf = substitute(conf, /^worker_processes auto;/m, 'worker_processes 1;', 1);
  // Loopback tests need far fewer than the example's; more would exceed a test machine's open-file limit.
  conf = substitute(conf, /^(\s*)worker_connections \d+;/m, '$1worker_connections 1024;', 1);
  return o.streamModule ? `load_module ${o.streamModule};\n${conf}` : conf;
}

/**
 * What nginx needs to run a `stream {}` block: nothing when the module is built in, the module's
 * path when it is dynamic (Debian: libnginx-mod-stream), or `{ skip }` when it is not installed.
 */
export function streamModule(): { path?: string; skip?: string } {
  const bin = requireBinary('nginx', 'nginx');
  if (!bin.path) return { skip: bin.skip ?? 'nginx missing' };
  const { stdout, stderr } = spawnSync(bin.path, ['-V'], { encoding: 'utf8' }); // nginx -V writes to stderr
  const version = `${stdout}${stderr}`;
  if (/--with-stream(?!=dynamic)(\s|$)/.test(version)) return {};
  const modules = /--modules-path=(\S+)/.exec(version)?.[1] ?? '/usr/lib/nginx/modules';
  const path = join(modules, 'ngx_stream_module.so');
  if (/--with-stream=dynamic/.test(version) && existsSync(path)) return { path };
  return missingService(
    `nginx's stream module (${path}; Debian package 'libnginx-mod-stream'); its tests cannot run`,
  );
}

/** A self-signed certificate for 127.0.0.1/localhost (openssl CLI). */
export function selfSignedCert(dir: string, opensslPath: string): { certFile: string; keyFile: string } {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync(
    opensslPath,
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  );
  return { certFile, keyFile };
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface RunningNginx {
  readonly process: RunningProcess;
  readonly dir: string;
  stop(): Promise<void>;
}

/**
 * Checks the configuration (`nginx -t`), then runs nginx in the foreground until `stop()`; resolves
 * once `readyPort` accepts connections. `{ skip }` when nginx is missing and CI is not set.
 */
export async function startNginx(conf: string, readyPort: number): Promise<RunningNginx | { skip: string }> {
  const bin = requireBinary('nginx', 'nginx');
  if (!bin.path) return { skip: bin.skip ?? 'nginx missing' };
  const dir = tempDir('nginx');
  const confFile = join(dir, 'nginx.conf');
  writeFileSync(confFile, conf);
  const globals = `daemon off; master_process on; pid ${join(dir, 'nginx.pid')}; error_log ${join(dir, 'error.log')} warn;`;
  const args = ['-p', dir, '-c', confFile, '-g', globals];
  try {
    execFileSync(bin.path, ['-t', ...args], { stdio: 'pipe' });
  } catch (err) {
    throw new Error(
      `nginx -t refused the derived configuration: ${(err as { stderr?: Buffer }).stderr?.toString()}`,
    );
  }
  const proc = await startProcess({
    name: 'nginx',
    command: bin.path,
    args,
    dir,
    ready: () => portOpen(readyPort),
  });
  return { process: proc, dir, stop: () => proc.stop() };
}
