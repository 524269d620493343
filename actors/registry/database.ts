import {
  FarmError,
  missingOn,
  type HostBye,
  type HostHeartbeat,
  type HostRecord,
  type HostRegister,
  type MatchBody,
  type MatchedHost,
  type ResourceProfile,
  type SlotInfo,
} from '../../protocol/index.ts';

/**
 * The resource database (DESIGN §1.4): one record per host with its probed inventory, its
 * slots and when it was last heard from. Pure values and functions, no I/O: every write
 * returns a new database and leaves the old one as it was, so the registry machine keeps it
 * in its context. Hosts are spread over a fixed number of buckets and a write copies one
 * bucket, not the whole map: every render server heartbeats, so writes are the common case
 * (5000 hosts: ~1 ms per heartbeat with one flat map copied, a few µs with buckets).
 */

/** One host as the registry holds it: the wire record plus what the sweep and match need. */
export interface HostEntry {
  readonly record: HostRecord;
  /** How often its render server promised to heartbeat (from its registration). */
  readonly heartbeatMs: number;
  /** Idle slots, counted on write so a match stays one pass over the hosts. */
  readonly idle: number;
}

/** Hosts by name, spread over BUCKETS maps; `size` counts them all. */
export interface RegistryDatabase {
  readonly buckets: readonly ReadonlyMap<string, HostEntry>[];
  readonly size: number;
}

const BUCKETS = 64;

/** A host that left the database, and why (the `down` event's reason). */
export interface DroppedHost {
  host: string;
  serverId: string;
  reason: string;
}

export function emptyDatabase(): RegistryDatabase {
  return { buckets: Array.from({ length: BUCKETS }, () => new Map<string, HostEntry>()), size: 0 };
}

function bucketOf(host: string): number {
  let h = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < host.length; i++) h = Math.imul(h ^ host.charCodeAt(i), 0x01000193);
  return (h >>> 0) % BUCKETS;
}

export function hostEntry(db: RegistryDatabase, host: string): HostEntry | undefined {
  return db.buckets[bucketOf(host)]!.get(host);
}

export function* hostEntries(db: RegistryDatabase): Iterable<HostEntry> {
  for (const b of db.buckets) yield* b.values();
}

/** The host's entry when it is the given render server instance, else undefined. */
export function knownHost(
  db: RegistryDatabase,
  host: string,
  serverId: string,
): HostEntry | undefined {
  const e = hostEntry(db, host);
  return e !== undefined && e.record.serverId === serverId ? e : undefined;
}

/**
 * What the schema cannot say about a slot list: indexes must be unique. Throws
 * RB_SCHEMA_MISMATCH naming the field and the repeated index.
 */
export function checkSlots(field: string, slots: readonly SlotInfo[]): void {
  const seen = new Set<number>();
  for (let i = 0; i < slots.length; i++) {
    const idx = slots[i]!.index;
    if (seen.has(idx)) {
      const where = `${field}/${i}/index`;
      throw new FarmError('RB_SCHEMA_MISMATCH', `${where}: slot index ${idx} appears twice`);
    }
    seen.add(idx);
  }
}

/**
 * Checks a registration beyond its schema (which already rejects a malformed inventory);
 * throws a FarmError naming what is wrong.
 */
export function checkRegistration(msg: HostRegister): void {
  checkSlots('/slots', msg.slots);
}

/** Checks a heartbeat beyond its schema; throws a FarmError naming what is wrong. */
export function checkHeartbeat(msg: HostHeartbeat): void {
  checkSlots('/slots', msg.slots);
}

function countIdle(slots: readonly SlotInfo[]): number {
  let n = 0;
  for (const s of slots) if (s.state === 'idle') n++;
  return n;
}

function withHost(db: RegistryDatabase, host: string, entry: HostEntry | null): RegistryDatabase {
  const i = bucketOf(host);
  const bucket = new Map(db.buckets[i]);
  const had = bucket.has(host);
  if (entry === null) bucket.delete(host);
  else bucket.set(host, entry);
  const buckets = db.buckets.slice();
  buckets[i] = bucket;
  return { buckets, size: db.size + (entry === null ? (had ? -1 : 0) : had ? 0 : 1) };
}

/**
 * Adds or replaces a host. `replaced` is the previous entry when another render server
 * instance held the host (it restarted); `isNew` is false when the same instance registered
 * again (a retry, or after it saw a new registry).
 */
export function registerHost(
  db: RegistryDatabase,
  msg: HostRegister,
  now: number,
): { db: RegistryDatabase; isNew: boolean; replaced: HostEntry | undefined } {
  const prev = hostEntry(db, msg.host);
  const sameInstance = prev !== undefined && prev.record.serverId === msg.serverId;
  const record: HostRecord = {
    host: msg.host,
    serverId: msg.serverId,
    inventory: msg.inventory,
    slots: msg.slots,
    registeredAt: sameInstance ? prev.record.registeredAt : now,
    lastSeenAt: now,
    draining: false,
  };
  const entry: HostEntry = { record, heartbeatMs: msg.heartbeatMs, idle: countIdle(msg.slots) };
  return {
    db: withHost(db, msg.host, entry),
    isNew: !sameInstance,
    replaced: prev !== undefined && !sameInstance ? prev : undefined,
  };
}

/**
 * Records a heartbeat. `known: false` (database unchanged) when the host is unknown or
 * another instance of its render server holds it: the render server then registers again.
 */
export function applyHeartbeat(
  db: RegistryDatabase,
  msg: HostHeartbeat,
  now: number,
): { db: RegistryDatabase; known: boolean } {
  const prev = knownHost(db, msg.host, msg.serverId);
  if (prev === undefined) return { db, known: false };
  const record: HostRecord = {
    ...prev.record,
    slots: msg.slots,
    lastSeenAt: now,
    draining: msg.draining ?? false,
    ...(msg.load !== undefined ? { load: msg.load } : {}),
  };
  const entry: HostEntry = { ...prev, record, idle: countIdle(msg.slots) };
  return { db: withHost(db, msg.host, entry), known: true };
}

/**
 * Removes a host that said goodbye. A bye from an instance that no longer holds the host
 * changes nothing.
 */
export function removeHost(
  db: RegistryDatabase,
  msg: HostBye,
): { db: RegistryDatabase; removed: DroppedHost | undefined } {
  if (knownHost(db, msg.host, msg.serverId) === undefined) return { db, removed: undefined };
  const removed: DroppedHost = { host: msg.host, serverId: msg.serverId, reason: 'stopped' };
  return { db: withHost(db, msg.host, null), removed };
}

/**
 * One slot changed between heartbeats. Ignored (database unchanged, `applied: false`) when the
 * host or its instance is unknown, or the host has no slot with that index.
 */
export function applySlotEvent(
  db: RegistryDatabase,
  host: string,
  serverId: string,
  slot: SlotInfo,
): { db: RegistryDatabase; applied: boolean } {
  const prev = knownHost(db, host, serverId);
  if (prev === undefined) return { db, applied: false };
  const at = prev.record.slots.findIndex((s) => s.index === slot.index);
  if (at < 0) return { db, applied: false };
  const slots = prev.record.slots.slice();
  slots[at] = slot;
  const entry: HostEntry = { ...prev, record: { ...prev.record, slots }, idle: countIdle(slots) };
  return { db: withHost(db, host, entry), applied: true };
}

/**
 * Drops every host not heard from for more than `missedBeats` of its own heartbeat periods.
 * Returns the same database object when nobody is dropped.
 */
export function sweepSilent(
  db: RegistryDatabase,
  now: number,
  missedBeats: number,
): { db: RegistryDatabase; dropped: DroppedHost[] } {
  const dropped: DroppedHost[] = [];
  const reason = `missed ${missedBeats} heartbeats`;
  for (const e of hostEntries(db)) {
    if (now - e.record.lastSeenAt > missedBeats * e.heartbeatMs) {
      dropped.push({ host: e.record.host, serverId: e.record.serverId, reason });
    }
  }
  if (dropped.length === 0) return { db, dropped };
  let next = db;
  for (const d of dropped) next = withHost(next, d.host, null);
  return { db: next, dropped };
}

/**
 * The registry is back on the bus after an outage of its own: every host counts as seen now,
 * so none is dropped for heartbeats that could not reach the registry.
 */
export function graceAll(db: RegistryDatabase, now: number): RegistryDatabase {
  const buckets = db.buckets.map((b) => new Map([...b].map(([host, e]) => [host, { ...e, record: { ...e.record, lastSeenAt: now } }])));
  return { buckets, size: db.size };
}

/** Slots free for new work: the idle ones, none on a draining host. */
export function freeSlots(e: HostEntry): number {
  return e.record.draining === true ? 0 : e.idle;
}

const CLOSEST = 3;

/**
 * The resource list for a profile (parsed once by the caller): hosts whose inventory matches,
 * most free slots first, then by name. With `freeOnly`, only hosts with a free slot. When no
 * host's inventory matches, `closest` names up to three hosts missing the fewest requirements.
 * One pass over the hosts, plus sorting the matches.
 */
export function matchHosts(
  db: RegistryDatabase,
  profile: ResourceProfile,
  opts: { freeOnly?: boolean } = {},
): MatchBody {
  const hosts: MatchedHost[] = [];
  let anyMatch = false;
  const closest: Near[] = [];
  for (const bucket of db.buckets) {
    for (const e of bucket.values()) {
      const missing = missingOn(profile, e.record.inventory);
      if (missing.length === 0) {
        anyMatch = true;
        const free = freeSlots(e);
        if (opts.freeOnly === true && free === 0) continue;
        const { host, serverId, inventory, slots } = e.record;
        hosts.push({ host, serverId, inventory, slots, free });
      } else if (!anyMatch) {
        keepClosest(closest, { host: e.record.host, missing });
      }
    }
  }
  hosts.sort((a, b) => b.free - a.free || byName(a.host, b.host));
  return { hosts, closest: anyMatch ? [] : closest, totalHosts: db.size };
}

/**
 * A match as long as fits `budget` bytes: the first hosts (the most free slots first, as
 * matchHosts orders them) whose sizes (`sizeOf`, bytes encoded) add up to at most the budget,
 * after `fixed` bytes for the rest of the reply. A farm of thousands of hosts does not fit one
 * NATS message (about 1,100 idle 16-slot hosts fill 1 MiB): the scheduler gets the hosts with
 * the most room, and the rest in its next rounds, once these are busy. Returns the same body
 * when everything fits.
 */
export function fitMatch(body: MatchBody, budget: number, fixed: number, sizeOf: (h: MatchedHost) => number): MatchBody {
  let used = fixed;
  let n = 0;
  for (const h of body.hosts) {
    used += sizeOf(h);
    if (used > budget) break;
    n += 1;
  }
  return n === body.hosts.length ? body : { ...body, hosts: body.hosts.slice(0, n) };
}

interface Near {
  host: string;
  missing: string[];
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const nearer = (a: Near, b: Near): boolean =>
  a.missing.length < b.missing.length || (a.missing.length === b.missing.length && a.host < b.host);

/** Keeps in `list` (local to one match) the nearest hosts so far: fewest missing, then by name. */
function keepClosest(list: Near[], c: Near): void {
  if (list.length === CLOSEST && !nearer(c, list[CLOSEST - 1]!)) return;
  let i = Math.min(list.length, CLOSEST - 1);
  list[i] = c;
  for (; i > 0 && nearer(list[i]!, list[i - 1]!); i--) {
    [list[i - 1], list[i]] = [list[i]!, list[i - 1]!];
  }
}

/** Every host record, by name. */
export function listHosts(db: RegistryDatabase): HostRecord[] {
  return [...hostEntries(db)].map((e) => e.record).sort((a, b) => byName(a.host, b.host));
}

/** One page of the host list (`reg.list`), and whether more hosts follow it. */
export interface HostPage {
  hosts: HostRecord[];
  more: boolean;
}

export interface PageOptions {
  /** Only hosts whose names sort after this one (the last host of the previous page). */
  after?: string;
  /** At most this many hosts. */
  limit?: number;
  /** Bytes one reply may carry: the page's host sizes plus `fixed` stay within it. */
  budget: number;
  /** Bytes of the reply besides its hosts. */
  fixed: number;
  /** A host record's size, encoded. */
  sizeOf: (h: HostRecord) => number;
}

/**
 * One page of the host list: the hosts sorted by name after `after`, at most `limit` of them and
 * no more than fit `budget` bytes (as fitMatch: past about 1,000 hosts the list does not fit one
 * NATS message). Sorted by name, a page ends at a host the next request can start after, whatever
 * registers or leaves meanwhile. Throws when the next host alone does not fit: it could never be
 * listed, and a page of none would send the client round forever.
 */
export function listPage(db: RegistryDatabase, o: PageOptions): HostPage {
  const after = o.after;
  const left: HostRecord[] = [];
  for (const e of hostEntries(db)) if (after === undefined || e.record.host > after) left.push(e.record);
  left.sort((a, b) => byName(a.host, b.host));
  const most = Math.min(left.length, o.limit ?? Infinity);
  let used = o.fixed;
  let n = 0;
  for (; n < most; n++) {
    const size = o.sizeOf(left[n]!);
    used += size;
    if (used > o.budget) {
      if (n === 0) {
        const room = o.budget - o.fixed;
        throw new FarmError('RB_REMOTE_UNKNOWN', `host ${left[0]!.host}'s record is ${size} bytes, more than one reply carries (${room}): the registry cannot list it`);
      }
      break;
    }
  }
  return { hosts: left.slice(0, n), more: n < left.length };
}
