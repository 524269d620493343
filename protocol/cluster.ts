import { FarmError } from './errors.ts';

/** The most copies a farm keeps of a stream: JetStream's R3 survives the loss of any one server. */
export const MAX_REPLICAS = 3;

/**
 * How many copies of each stream and KV bucket a farm keeps on a NATS cluster of `clusterSize`
 * servers: one per server up to three (a single server: 1; nats-server refuses more there).
 * R3 on a cluster of five or more is enough: every copy beyond three slows each write.
 */
export function replicasFor(clusterSize: number): number {
  if (!Number.isInteger(clusterSize) || clusterSize < 1) throw new FarmError('RB_BAD_ARGUMENT', `a NATS cluster of ${clusterSize} servers is not a size`);
  return Math.min(clusterSize, MAX_REPLICAS);
}

const SCHEMES = new Set(['nats:', 'tls:']);

/**
 * A farm's NATS servers from `--nats` or RENDERBUS_NATS: one URL, or several separated by commas
 * (the members of a cluster; a client fails over between them). `host:port` means nats://host:port.
 * Each must be a nats:// or tls:// URL with a host; an empty or bad one is named in the error.
 */
export function parseServerList(text: string, what = '--nats'): string[] {
  const items = text.split(',').map((s) => s.trim());
  const out: string[] = [];
  items.forEach((item, i) => {
    if (item === '') throw new FarmError('RB_BAD_ARGUMENT', `${what}: server ${i + 1} of ${items.length} is empty (give URLs separated by commas, e.g. nats://a:4222,nats://b:4222)`);
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(item) ? item : `nats://${item}`;
    let u: URL;
    try {
      u = new URL(withScheme);
    } catch {
      throw new FarmError('RB_BAD_ARGUMENT', `${what}: '${item}' is not a URL (give nats://host:port)`);
    }
    if (!SCHEMES.has(u.protocol)) throw new FarmError('RB_BAD_ARGUMENT', `${what}: '${item}' is a ${u.protocol.slice(0, -1)} URL; a NATS server is nats://host:port or tls://host:port`);
    if (u.hostname === '') throw new FarmError('RB_BAD_ARGUMENT', `${what}: '${item}' names no host`);
    if ((u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.hash !== '') throw new FarmError('RB_BAD_ARGUMENT', `${what}: '${item}' has a path; a NATS server is nats://host:port`);
    if (!out.includes(item)) out.push(item);
  });
  return out;
}
