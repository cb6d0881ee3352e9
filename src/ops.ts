/**
 * Room: shared. Operational endpoints (contract §6): `/healthz` (the process serves), `/readyz` (listeners up and
 * storage reachable or its backlog under its limit; 503 with a JSON reason otherwise) and `/metrics`
 * (Prometheus text).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Metrics } from './metrics.js';

export interface Readiness {
  readonly ok: boolean;
  readonly reason?: string;
}

export function opsRoutes(metrics: Metrics, readiness: () => Readiness) {
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return true;
    }
    if (path === '/readyz') {
      const r = readiness();
      res
        .writeHead(r.ok ? 200 : 503, { 'content-type': 'application/json' })
        .end(JSON.stringify(r.ok ? { status: 'ready' } : { status: 'not ready', reason: r.reason }));
      return true;
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
      return true;
    }
    return false;
  };
}
