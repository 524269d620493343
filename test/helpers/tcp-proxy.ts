import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';

/** A loopback TCP proxy in front of a leaf listener: it counts bytes, and can cut the link and restore it. */
export interface TcpProxy {
  port: number;
  /** Bytes carried, both ways. */
  readonly bytes: number;
  /** Connections accepted and forwarded so far. */
  readonly connections: number;
  /** Drops every connection and refuses new ones until `restore`. */
  cut(): void;
  restore(): void;
  /** One-way delay added to each chunk, in ms. */
  setDelay(ms: number): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, host = '127.0.0.1'): Promise<TcpProxy> {
  const socks = new Set<Socket>();
  let down = false;
  let delayMs = 0;
  let bytes = 0;
  let connections = 0;
  const pipe = (from: Socket, to: Socket) =>
    from.on('data', (d: Buffer) => {
      bytes += d.length;
      if (delayMs > 0) setTimeout(() => !to.destroyed && to.write(d), delayMs);
      else to.write(d);
    });
  const server: Server = createServer((c) => {
    if (down) return void c.destroy();
    connections++;
    const u = connect(targetPort, host);
    socks.add(c).add(u);
    pipe(c, u);
    pipe(u, c);
    const end = () => {
      c.destroy();
      u.destroy();
      socks.delete(c);
      socks.delete(u);
    };
    for (const s of [c, u]) s.on('error', end).on('close', end);
  });
  server.listen(0, host);
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const dropAll = () => {
    for (const s of socks) s.destroy();
    socks.clear();
  };
  return {
    port,
    get bytes() {
      return bytes;
    },
    get connections() {
      return connections;
    },
    cut() {
      down = true;
      dropAll();
    },
    restore() {
      down = false;
    },
    setDelay(ms) {
      delayMs = ms;
    },
    async close() {
      dropAll();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
