import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';

export interface BusOptions {
  servers: string;
  name: string;
  log?: Logger;
}

/**
 * A daemon's connection (notes/nats.md): reconnect forever, wait for the first connect,
 * and ping often enough that a dead server is noticed within ~20 s.
 */
export async function connectBus(opts: BusOptions): Promise<NatsConnection> {
  const nc = await connect({
    servers: opts.servers,
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    pingInterval: 10_000,
    maxPingOut: 2,
    // no stack captured per request: at hundreds of requests a second it shows in profiles
    noAsyncTraces: true,
  });
  if (opts.log) void logStatus(nc, opts.log);
  return nc;
}

/** A short-lived client's connection (CLI commands): fail fast when no farm is there. */
export async function connectClient(servers: string, name: string): Promise<NatsConnection> {
  return connect({ servers, name, maxReconnectAttempts: 0, timeout: 3_000 });
}

async function logStatus(nc: NatsConnection, log: Logger): Promise<void> {
  for await (const s of nc.status()) {
    if (s.type === 'disconnect' || s.type === 'error') log.warn({ status: s.type }, 'nats connection status');
    else if (s.type === 'reconnect') log.info({ status: s.type }, 'nats connection status');
  }
}
