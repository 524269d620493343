import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { checkAccess, READ_COOKIE, TOKEN_HEADER, type AccessPolicy } from './http-access.ts';

/** One route's answer: status, content type and body (and more headers, e.g. caching). */
export interface HttpAnswer {
  status?: number;
  contentType: string;
  body: string | Uint8Array;
  headers?: Record<string, string>;
}

/** What a route is handed: the request, its URL, the `:name` parts of its path, and the response for routes that stream. */
export interface RouteContext {
  url: URL;
  params: Record<string, string>;
  res: ServerResponse;
  /** What the access check found: the request carried the right token; it came from loopback. */
  access: { token: boolean; loopback: boolean };
}

/**
 * A route answers, or returns null when it wrote the response itself (a stream). A `public`
 * route (the page's own files) is served to other machines without the token.
 */
export type Route = ((req: IncomingMessage, ctx: RouteContext) => HttpAnswer | null | Promise<HttpAnswer | null>) & { readonly public?: boolean };

/** Marks a route as public: it holds nothing of the farm (see Route). */
export function publicRoute(route: Route): Route {
  return Object.assign(route, { public: true });
}

/**
 * Sent with every answer: no framing (clickjacking of the action buttons), no content sniffing,
 * no referrer (URLs name jobs), no use of our answers by other sites' pages. A page that needs
 * more (the web monitor's inline import map) sends its own content-security-policy.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
};

export interface HttpOptions {
  /** Port to listen on; 0 for any free port. */
  port: number;
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** When `port` is taken, listen on a free port instead of failing. */
  fallback?: boolean;
  /**
   * Routes by `[METHOD ]path`: `/metrics` is `GET /metrics`; a path part `:name` matches one
   * segment and hands it over in `params` (`POST /api/jobs/:job/:action`). Exact paths win over
   * patterns. Unknown paths answer 404; known paths with another method 405. The map may grow
   * after the server starts.
   */
  routes: Map<string, Route>;
  /** Who may ask what (http-access.ts); without a token, actions and other machines are refused. */
  access?: AccessPolicy;
  onError?: (err: unknown, path: string) => void;
}

export interface HttpHandle {
  /** `http://host:port`, as a browser or Prometheus reaches it. */
  readonly url: string;
  readonly port: number;
  /** The address the server is bound to, as the system reports it (`127.0.0.1`, `0.0.0.0`, `::`). */
  readonly bound: string;
  /** The port asked for was taken and another was chosen. */
  readonly fellBack: boolean;
  close(): Promise<void>;
}

/** The route for a method and path, with its params; `allowed` lists the methods the path has when the method does not match. */
export function findRoute(routes: ReadonlyMap<string, Route>, method: string, path: string): { route: Route; params: Record<string, string> } | { allowed: string[] } {
  const want = method === 'HEAD' ? 'GET' : method;
  const parts = path.split('/');
  const allowed = new Set<string>();
  let best: { route: Route; params: Record<string, string>; exact: boolean } | undefined;
  for (const [key, route] of routes) {
    const space = key.indexOf(' ');
    const m = space < 0 ? 'GET' : key.slice(0, space);
    const pattern = space < 0 ? key : key.slice(space + 1);
    const params = matchPath(pattern.split('/'), parts);
    if (!params) continue;
    if (m !== want) {
      allowed.add(m);
      continue;
    }
    const exact = !pattern.includes(':');
    if (!best || (exact && !best.exact)) best = { route, params, exact };
  }
  return best ?? { allowed: [...allowed] };
}

function matchPath(pattern: string[], parts: string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const part = parts[i]!;
    if (p.startsWith(':')) {
      if (part === '') return null;
      try {
        params[p.slice(1)] = decodeURIComponent(part);
      } catch {
        return null; // a broken %-escape matches nothing
      }
    } else if (p !== part) return null;
  }
  return params;
}

/** The monitor's HTTP server (node:http): a table of routes, so the web monitor adds its own. */
export async function startHttp(o: HttpOptions): Promise<HttpHandle> {
  const host = o.host ?? '127.0.0.1';
  const server = createServer((req, res) => void answer(req, res));
  // Idle keep-alive connections outlive their clients' own timeouts (undici 4 s, browsers and
  // proxies about 60 s), so the client closes first. With Node's 5 s a request sent on a pooled
  // connection as the server closed it failed ("fetch failed"; seen in the web monitor test).
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  let port = 0;
  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    const url = new URL(req.url ?? '/', 'http://monitor');
    const path = url.pathname;
    const found = findRoute(o.routes, req.method ?? 'GET', path);
    // before routing: a refused request learns nothing, not even which paths exist
    const verdict = checkAccess({
      method: req.method ?? 'GET',
      host: req.headers.host,
      remoteAddress: req.socket.remoteAddress,
      headerToken: headerToken(req),
      readCookie: cookie(req, READ_COOKIE),
      isPublic: 'route' in found && found.route.public === true,
    }, o.access ?? {}, port);
    if (!verdict.ok) {
      req.resume();
      const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };
      if (verdict.status === 401) headers['www-authenticate'] = 'Bearer realm="renderbus monitor"';
      return void res.writeHead(verdict.status, headers).end(`${JSON.stringify({ error: { code: verdict.code, message: verdict.message } })}\n`);
    }
    if ('allowed' in found) {
      if (found.allowed.length === 0) return void res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}\n`);
      const allow = found.allowed.includes('GET') ? [...found.allowed, 'HEAD'] : found.allowed;
      return void res.writeHead(405, { allow: allow.join(', '), 'content-type': 'text/plain' }).end(`${req.method} is not allowed on ${path}: ${allow.join(', ')}\n`);
    }
    try {
      const a = await found.route(req, { url, params: found.params, res, access: { token: verdict.token, loopback: verdict.loopback } });
      if (a === null) return; // the route answered itself
      res.writeHead(a.status ?? 200, { 'content-type': a.contentType, 'cache-control': 'no-store', ...a.headers }).end(req.method === 'HEAD' ? undefined : a.body);
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
  const address = server.address() as AddressInfo;
  port = address.port;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}`,
    port,
    bound: address.address,
    fellBack,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The token a request carries: `x-renderbus-token`, or `Authorization: Bearer` (Prometheus, curl). */
function headerToken(req: IncomingMessage): string | undefined {
  const h = req.headers[TOKEN_HEADER];
  if (typeof h === 'string') return h.trim();
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return m?.[1];
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
