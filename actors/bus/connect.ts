import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { FarmError, describePrincipal, inboxPrefix, type Credentials } from '../../protocol/index.ts';
import { watchDenials } from './denials.ts';
import { nkeyLogin } from './nkey-login.ts';

export interface BusOptions {
  /** One server's URL, or every member of a NATS cluster: the connection fails over between them. */
  servers: string | readonly string[];
  name: string;
  /** Who this connection is: the site's nats-server refuses a connection without them. */
  creds: Credentials;
  log?: Logger;
}

/** Log-in options for a principal: its nkey, and reply subjects beneath its own inbox prefix. */
export function loginOptions(creds: Credentials): Pick<ConnectionOptions, 'authenticator' | 'inboxPrefix'> {
  return { authenticator: nkeyLogin(creds.seed), inboxPrefix: inboxPrefix(creds) };
}

/**
 * A daemon's connection (notes/nats.md): reconnect forever, wait for the first connect,
 * and ping often enough that a dead server is noticed within ~20 s.
 */
export async function connectBus(opts: BusOptions): Promise<NatsConnection> {
  const nc = await connect({
    servers: [...serverList(opts.servers)],
    name: opts.name,
    ...loginOptions(opts.creds),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    pingInterval: 10_000,
    maxPingOut: 2,
    // no stack captured per request: at hundreds of requests a second it shows in profiles
    noAsyncTraces: true,
  }).catch((err: unknown) => {
    throw refused(err, opts.servers, opts.creds);
  });
  watchDenials(nc, opts.creds, opts.log);
  if (opts.log) void logStatus(nc, opts.log);
  return nc;
}

/**
 * A CLI command's connection: fail fast when no farm is there. A short-lived one gives up when
 * the server goes; `reconnect` (a command that follows the farm, like `tail`) rides out restarts.
 */
export async function connectClient(servers: string | readonly string[], name: string, creds: Credentials, o: { reconnect?: boolean } = {}): Promise<NatsConnection> {
  const again = o.reconnect ? { maxReconnectAttempts: -1, reconnectTimeWait: 500 } : { maxReconnectAttempts: 0 };
  const nc = await connect({ servers: [...serverList(servers)], name, ...loginOptions(creds), ...again, timeout: 3_000 }).catch((err: unknown) => {
    throw refused(err, servers, creds);
  });
  watchDenials(nc, creds);
  return nc;
}

/**
 * The servers as nats.js takes them. It shuffles the list (no `noRandomize`), so a cluster's
 * clients spread over its members, and tries the next one when a connect or a connection fails.
 */
function serverList(servers: string | readonly string[]): readonly string[] {
  return typeof servers === 'string' ? [servers] : servers;
}

/** An authorization failure named as such (anything else passes through). */
function refused(err: unknown, servers: string | readonly string[], creds: Credentials): unknown {
  const text = String((err as Error)?.message ?? err);
  if (/authorization|authentication/i.test(text)) {
    return new FarmError('RB_NOT_AUTHENTICATED', `the NATS server at ${serverList(servers).join(', ')} refused the credential of ${describePrincipal(creds)} (site ${creds.site}): revoked, or issued by another farm`, { cause: err });
  }
  return err;
}

async function logStatus(nc: NatsConnection, log: Logger): Promise<void> {
  for await (const s of nc.status()) {
    if (s.type === 'disconnect' || s.type === 'error') log.warn({ status: s.type, err: 'error' in s ? s.error : undefined }, 'nats connection status');
    else if (s.type === 'reconnect') log.info({ status: s.type }, 'nats connection status');
  }
}
