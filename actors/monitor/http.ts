import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One route's answer: status, content type and body. */
export interface HttpAnswer {
  status?: number;
  contentType: string;
  body: string;
}

export type Route = (req: IncomingMessage) => HttpAnswer | Promise<HttpAnswer>;

export interface HttpOptions {
  /** Port to listen on; 0 for any free port. */
  port: number;
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** When `port` is taken, listen on a free port instead of failing. */
  fallback?: boolean;
  /** `GET <path>` → its route. Other paths answer 404, other methods 405. */
  routes: Map<string, Route>;
  onError?: (err: unknown, path: string) => void;
}

export interface HttpHandle {
  /** `http://host:port`, as a browser or Prometheus reaches it. */
  readonly url: string;
  readonly port: number;
  /** The port asked for was taken and another was chosen. */
  readonly fellBack: boolean;
  close(): Promise<void>;
}

/** The monitor's HTTP server (node:http): a table of GET routes, so the web UI can add its own. */
export async function startHttp(o: HttpOptions): Promise<HttpHandle> {
  const host = o.host ?? '127.0.0.1';
  const server = createServer((req, res) => void answer(req, res));
  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://monitor').pathname;
    const route = o.routes.get(path);
    if (!route) return void res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found; try ${[...o.routes.keys()].join(', ')}\n`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('GET only\n');
    try {
      const a = await route(req);
      res.writeHead(a.status ?? 200, { 'content-type': a.contentType, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : a.body);
    } catch (err) {
      o.onError?.(err, path);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error\n');
    }
  }

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => {
        server.off('listening', done);
        reject(err);
      };
      const done = () => {
        server.off('error', fail);
        resolve();
      };
      server.once('error', fail).once('listening', done).listen(port, host);
    });
  let fellBack = false;
  try {
    await listen(o.port);
  } catch (err) {
    if (!o.fallback || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    fellBack = true;
    await listen(0);
  }
  server.on('error', (err) => o.onError?.(err, '(server)')); // after listening, an error must not kill the process
  const port = (server.address() as AddressInfo).port;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}`,
    port,
    fellBack,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
