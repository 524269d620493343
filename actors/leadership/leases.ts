import { jetstream, JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { codecs, streams, type LeaderRole } from '../../protocol/index.ts';
import type { KeyState } from './machine.ts';

/** A leadership key as a candidate reads it: its revision, and the lease it holds (none: never taken, or released). */
export async function readKey(kv: KV, role: LeaderRole): Promise<KeyState> {
  const e = await kv.get(role);
  if (!e) return { revision: 0, lease: null };
  if (e.operation !== 'PUT') return { revision: e.revision, lease: null };
  try {
    return { revision: e.revision, lease: codecs.leadership.decode(e.value) };
  } catch {
    return { revision: e.revision, lease: null, unreadable: true };
  }
}

export const LEADER_ROLES: readonly LeaderRole[] = ['scheduler', 'registry'];

/**
 * Who leads each role of the site, for operators (`renderbus leaders`): read from the stream's
 * leader (not a direct get, which a lagging copy may answer). Null: the site has no leaders
 * bucket, so no scheduler or registry has run on it yet.
 */
export async function readLeases(nc: NatsConnection, site: string, timeoutMs = 5_000): Promise<({ role: LeaderRole } & KeyState)[] | null> {
  const kv = await new Kvm(jetstream(nc, { timeout: timeoutMs, checkAPI: false })).open(streams.leaders(site), { allow_direct: false });
  try {
    return await Promise.all(LEADER_ROLES.map(async (role) => ({ role, ...(await readKey(kv, role)) })));
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return null;
    throw err;
  }
}
