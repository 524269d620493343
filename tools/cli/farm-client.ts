import type { NatsConnection } from '@nats-io/transport-node';
import { call, connectClient } from '../../actors/bus/index.ts';
import { pageAllHosts, type AllHosts } from '../../actors/registry/list-client.ts';
import type { FarmFile } from '../../sites/farm-file.ts';
import { locateFarm } from '../../sites/locate-farm.ts';
import { FarmError, Role, codecs, subjects, type Codec, type Principal, type WireError } from '../../protocol/index.ts';
import { checkGlobals, type GlobalOptions } from './global-options.ts';

type Envelope<B> = { v: 1; ok: true; body: B } | { v: 1; ok: false; error: WireError };

/** A short-lived connection of one CLI command to one farm. */
export interface FarmClient {
  nc: NatsConnection;
  url: string;
  site: string;
  farm: FarmFile | null;
  /** Who this command is on the farm (its credential decides what the server lets it do). */
  creds: Principal;
  close(): Promise<void>;
}

/** Finds the farm (--nats, RENDERBUS_NATS or <data>/farm.json) and connects, failing fast; `reconnect`: see connectClient. */
export async function openFarm(g: GlobalOptions, clientName: string, o: { reconnect?: boolean } = {}): Promise<FarmClient> {
  const where = await locateFarm(checkGlobals(g));
  let nc: NatsConnection;
  try {
    nc = await connectClient(where.servers, clientName, where.creds, o);
  } catch (cause) {
    if (cause instanceof FarmError) throw cause; // refused credentials say so themselves
    const hint = where.farm ? ` (named by ${where.farm.dataDir}/farm.json)` : '';
    throw new FarmError('RB_FARM_NOT_FOUND', `cannot reach the farm's NATS ${where.servers.length > 1 ? 'servers' : 'server'} at ${where.url}${hint}: ${(cause as Error).message}`, { cause });
  }
  return {
    nc,
    url: where.url,
    site: where.site,
    farm: where.farm,
    creds: where.creds,
    close: async () => {
      if (!nc.isClosed()) await nc.drain().catch(() => nc.close());
    },
  };
}

/** Operators steer every job and the farm's settings on `op.*`; anyone else, their own jobs. */
export const isOperator = (fc: FarmClient) => fc.creds.role === Role.Operator;

/**
 * Where this caller steers a job: `op.ctl` for an operator (and the monitor, whose pages check their
 * own token), else `sched.ctl.<its user>`, its own jobs only.
 */
export function ctlSubject(fc: FarmClient): string {
  return isOperator(fc) || fc.creds.role === Role.Monitor ? subjects.opCtl(fc.site) : subjects.schedCtl(fc.site, fc.creds.name);
}

const ACTORS = {
  scheduler: { code: 'RB_SCHEDULER_UNAVAILABLE', start: "'renderbus up' or 'renderbus scheduler'" },
  registry: { code: 'RB_REGISTRY_UNAVAILABLE', start: "'renderbus up' or 'renderbus registry'" },
} as const;

/**
 * One request to the scheduler or the registry. When nobody answers the error says which
 * actor is missing and how to start it.
 */
export async function ask<Req, Body>(
  fc: FarmClient,
  actor: keyof typeof ACTORS,
  subject: string,
  request: Codec<Req>,
  msg: Req,
  reply: Codec<Envelope<Body>>,
  timeoutMs = 5_000,
): Promise<Body> {
  const a = ACTORS[actor];
  try {
    return await call(fc.nc, subject, request, msg, reply, { timeoutMs, unavailable: a.code });
  } catch (err) {
    if (err instanceof FarmError && err.code === a.code) {
      throw new FarmError(a.code, `${actor} unavailable: nobody answered on ${subject} at ${fc.url} (is ${a.start} running for site '${fc.site}'?)`, { cause: err, retryable: true });
    }
    throw err;
  }
}

/**
 * Every host in the registry, page after page of `reg.list` (a large farm does not fit one
 * reply), each page asked through `ask`: when nobody answers, the same error names the registry.
 */
export function askAllHosts(fc: FarmClient, timeoutMs = 5_000): Promise<AllHosts> {
  return pageAllHosts((req) => ask(fc, 'registry', subjects.regList(fc.site), codecs.listRequest, req, codecs.listReply, timeoutMs));
}
