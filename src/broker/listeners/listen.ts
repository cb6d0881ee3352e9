/**
 * Room: broker (listeners). Binding a server to its port.
 */
import type { Server } from 'node:net';

/** Listens and resolves with the bound port (useful with port 0); rejects on EADDRINUSE etc. */
export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as { port: number }).port);
    });
  });
}

export function boundPort(server: Server): number {
  return (server.address() as { port: number }).port;
}

/** Closes a server; resolves when it stopped listening (open connections are the caller's). */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
