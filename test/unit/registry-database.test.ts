import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  applyHeartbeat,
  applySlotEvent,
  checkHeartbeat,
  checkRegistration,
  emptyDatabase,
  freeSlots,
  hostEntries,
  hostEntry,
  listHosts,
  matchHosts,
  registerHost,
  removeHost,
  sweepSilent,
  type RegistryDatabase,
} from '../../actors/registry/database.ts';
import {
  FarmError,
  toProfile,
  type HostHeartbeat,
  type HostInventory,
  type HostRegister,
  type Requirements,
  type SlotInfo,
} from '../../protocol/index.ts';
import { anInventory } from '../helpers/builders.ts';


const slots = (...states: SlotInfo['state'][]): SlotInfo[] => states.map((state, index) => ({ index, state }));

function aRegister(o: Partial<HostRegister> = {}): HostRegister {
  return { v: 1, host: 'h1', serverId: 's1', inventory: anInventory(), slots: slots('idle', 'idle'), heartbeatMs: 1_000, ...o };
}

function aHeartbeat(o: Partial<HostHeartbeat> = {}): HostHeartbeat {
  return { v: 1, host: 'h1', serverId: 's1', slots: slots('idle', 'idle'), ...o };
}

function withHosts(...regs: HostRegister[]): RegistryDatabase {
  return regs.reduce((db, r) => registerHost(db, r, 1_000).db, emptyDatabase());
}

const match = (db: RegistryDatabase, req: Requirements, freeOnly?: boolean) => matchHosts(db, toProfile(req), { freeOnly });

test('registry-database - register adds a host; the same instance again is not new', () => {
  const first = registerHost(emptyDatabase(), aRegister(), 1_000);
  assert.equal(first.isNew, true);
  assert.equal(first.replaced, undefined);
  assert.equal(hostEntry(first.db, 'h1')?.record.registeredAt, 1_000);
  const again = registerHost(first.db, aRegister({ slots: slots('busy', 'idle') }), 2_000);
  assert.equal(again.isNew, false);
  assert.equal(again.replaced, undefined);
  const rec = hostEntry(again.db, 'h1')!.record;
  assert.equal(rec.registeredAt, 1_000, 'same instance keeps its registration time');
  assert.equal(rec.lastSeenAt, 2_000);
  assert.deepEqual(rec.slots, slots('busy', 'idle'));
  assert.equal(hostEntry(first.db, 'h1')!.record.slots[0]!.state, 'idle', 'the old database is left unchanged');
});

test('registry-database - a new serverId replaces the host record (render server restarted)', () => {
  const db = withHosts(aRegister());
  const r = registerHost(db, aRegister({ serverId: 's2', slots: slots('idle') }), 5_000);
  assert.equal(r.isNew, true);
  assert.equal(r.replaced?.record.serverId, 's1');
  const rec = hostEntry(r.db, 'h1')!.record;
  assert.equal(rec.serverId, 's2');
  assert.equal(rec.registeredAt, 5_000);
  assert.equal(rec.slots.length, 1);
  assert.equal(r.db.size, 1);
});

test('registry-database - heartbeat from an unknown host or another instance is not known', () => {
  const db = withHosts(aRegister());
  const unknown = applyHeartbeat(db, aHeartbeat({ host: 'h9' }), 2_000);
  assert.equal(unknown.known, false);
  assert.equal(unknown.db, db);
  const stale = applyHeartbeat(db, aHeartbeat({ serverId: 'old' }), 2_000);
  assert.equal(stale.known, false);
  assert.equal(hostEntry(stale.db, 'h1')!.record.lastSeenAt, 1_000);
});

test('registry-database - heartbeat updates slots, load, draining and last seen', () => {
  const db = withHosts(aRegister());
  const r = applyHeartbeat(db, aHeartbeat({ slots: slots('busy', 'idle'), load: 1.5, draining: true }), 2_500);
  assert.equal(r.known, true);
  const e = hostEntry(r.db, 'h1')!;
  assert.equal(e.record.lastSeenAt, 2_500);
  assert.equal(e.record.load, 1.5);
  assert.equal(e.record.draining, true);
  assert.equal(e.idle, 1);
  assert.equal(freeSlots(e), 0, 'a draining host has no free slots');
  const back = hostEntry(applyHeartbeat(r.db, aHeartbeat({ slots: slots('busy', 'idle') }), 3_000).db, 'h1')!;
  assert.equal(back.record.draining, false, 'draining absent means not draining');
  assert.equal(back.record.load, 1.5, 'load absent keeps the last one reported');
  assert.equal(freeSlots(back), 1);
});

test('registry-database - bye removes the host only for the instance holding it', () => {
  const db = withHosts(aRegister());
  const stale = removeHost(db, { v: 1, host: 'h1', serverId: 'old' });
  assert.equal(stale.removed, undefined);
  assert.equal(stale.db.size, 1);
  const r = removeHost(db, { v: 1, host: 'h1', serverId: 's1' });
  assert.deepEqual(r.removed, { host: 'h1', serverId: 's1', reason: 'stopped' });
  assert.equal(r.db.size, 0);
  assert.equal(removeHost(r.db, { v: 1, host: 'h1', serverId: 's1' }).removed, undefined, 'a second bye is harmless');
});

test('registry-database - slot events change one slot of a known instance', () => {
  const db = withHosts(aRegister());
  const r = applySlotEvent(db, 'h1', 's1', { index: 1, state: 'busy', jobId: 'j1', taskId: 'j1.0' });
  assert.equal(r.applied, true);
  assert.deepEqual(hostEntry(r.db, 'h1')!.record.slots, [{ index: 0, state: 'idle' }, { index: 1, state: 'busy', jobId: 'j1', taskId: 'j1.0' }]);
  assert.equal(freeSlots(hostEntry(r.db, 'h1')!), 1);
  assert.equal(applySlotEvent(db, 'h1', 'old', { index: 1, state: 'busy' }).applied, false, 'another instance');
  assert.equal(applySlotEvent(db, 'h9', 's1', { index: 1, state: 'busy' }).applied, false, 'unknown host');
  assert.equal(applySlotEvent(db, 'h1', 's1', { index: 7, state: 'busy' }).applied, false, 'no such slot');
});

test('registry-database - sweep drops hosts silent for more than missedBeats of their own period', () => {
  let db = withHosts(aRegister({ host: 'fast', heartbeatMs: 100 }), aRegister({ host: 'slow', heartbeatMs: 1_000 }));
  // both registered at 1000
  const atLimit = sweepSilent(db, 1_300, 3);
  assert.deepEqual(atLimit.dropped, [], 'exactly 3 periods is not yet missed');
  assert.equal(atLimit.db, db);
  const r = sweepSilent(db, 1_301, 3);
  assert.deepEqual(r.dropped, [{ host: 'fast', serverId: 's1', reason: 'missed 3 heartbeats' }]);
  db = r.db;
  assert.deepEqual([...hostEntries(db)].map((e) => e.record.host), ['slow']);
  db = applyHeartbeat(db, aHeartbeat({ host: 'slow' }), 3_500).db;
  assert.deepEqual(sweepSilent(db, 6_500, 3).dropped, []);
  assert.equal(sweepSilent(db, 6_501, 3).dropped[0]?.host, 'slow');
});

test('registry-database - match returns matching hosts, most free slots first, then by name', () => {
  const db = withHosts(
    aRegister({ host: 'b', slots: slots('idle', 'busy') }),
    aRegister({ host: 'a', slots: slots('idle', 'busy') }),
    aRegister({ host: 'c', slots: slots('idle', 'idle', 'idle') }),
    aRegister({ host: 'd', slots: slots('busy', 'busy') }),
    aRegister({ host: 'old', inventory: anInventory({ packages: [{ name: 'povray', version: '3.6.1' }] }) }),
  );
  const r = match(db, { packages: ['povray@3.7.*'] });
  assert.deepEqual(r.hosts.map((h) => [h.host, h.free]), [['c', 3], ['a', 1], ['b', 1], ['d', 0]]);
  assert.deepEqual(r.closest, []);
  assert.equal(r.totalHosts, 5);
  assert.deepEqual(r.hosts[0]!.slots, slots('idle', 'idle', 'idle'));
  assert.equal(r.hosts[0]!.serverId, 's1');
});

test('registry-database - freeOnly leaves out busy and draining hosts', () => {
  let db = withHosts(aRegister({ host: 'busy', slots: slots('busy') }), aRegister({ host: 'free' }), aRegister({ host: 'drain' }));
  db = applyHeartbeat(db, aHeartbeat({ host: 'drain', draining: true }), 2_000).db;
  const all = match(db, {});
  assert.deepEqual(all.hosts.map((h) => [h.host, h.free]), [['free', 2], ['busy', 0], ['drain', 0]]);
  const free = match(db, {}, true);
  assert.deepEqual(free.hosts.map((h) => h.host), ['free']);
  assert.deepEqual(free.closest, [], 'hosts match but are busy: nothing is missing');
  assert.equal(free.totalHosts, 3);
});

test('registry-database - slot states other than idle are not free', () => {
  const db = withHosts(aRegister({ slots: slots('idle', 'draining', 'busy') }));
  assert.equal(match(db, {}).hosts[0]!.free, 1);
});

test('registry-database - when nothing matches, closest names up to three hosts missing the least', () => {
  const db = withHosts(
    aRegister({ host: 'ram-and-cpu', inventory: anInventory({ ramMb: 1_024, cpu: { count: 1, family: 'intel', type: 'xeon', speedMhz: 2400 } }) }),
    aRegister({ host: 'ram-b', inventory: anInventory({ ramMb: 1_024 }) }),
    aRegister({ host: 'ram-a', inventory: anInventory({ ramMb: 2_048 }) }),
    aRegister({ host: 'everything', inventory: anInventory({ ramMb: 1, cpu: { count: 1, family: 'amd', type: 'epyc', speedMhz: 1 }, packages: [] }) }),
    aRegister({ host: 'ram-c', inventory: anInventory({ ramMb: 4_096 }) }),
  );
  const r = match(db, { ramMb: 8_192, cpuCount: 2, packages: ['povray@3.7.*'] });
  assert.deepEqual(r.hosts, []);
  assert.equal(r.totalHosts, 5);
  assert.deepEqual(r.closest, [
    { host: 'ram-a', missing: ['needs 8192 MB RAM, has 2048'] },
    { host: 'ram-b', missing: ['needs 8192 MB RAM, has 1024'] },
    { host: 'ram-c', missing: ['needs 8192 MB RAM, has 4096'] },
  ]);
  const two = match(withHosts(aRegister({ host: 'x', inventory: anInventory({ ramMb: 1 }) })), { ramMb: 2 });
  assert.deepEqual(two.closest.map((c) => c.host), ['x']);
  assert.deepEqual(match(emptyDatabase(), {}), { hosts: [], closest: [], totalHosts: 0 });
});

test('registry-database - closest keeps the three nearest among many hosts, whatever their registration order', () => {
  const far = Array.from({ length: 40 }, (_, i) => aRegister({ host: `far-${i}`, inventory: anInventory({ ramMb: 1, packages: [] }) }));
  const near = ['near-c', 'near-a', 'near-b'].map((host) => aRegister({ host, inventory: anInventory({ ramMb: 1 }) }));
  for (const order of [[...far, ...near], [...near, ...far], [...far.slice(0, 20), ...near, ...far.slice(20)]]) {
    const r = match(withHosts(...order), { ramMb: 2, packages: ['povray@3.7.*'] });
    assert.deepEqual(r.closest.map((c) => [c.host, c.missing.length]), [['near-a', 1], ['near-b', 1], ['near-c', 1]]);
  }
});

test('registry-database - closest is empty as soon as one host matches', () => {
  const db = withHosts(aRegister({ host: 'a', inventory: anInventory({ ramMb: 1 }) }), aRegister({ host: 'z' }));
  const r = match(db, { ramMb: 1_000 });
  assert.deepEqual(r.hosts.map((h) => h.host), ['z']);
  assert.deepEqual(r.closest, []);
});

test('registry-database - list returns every record by name', () => {
  const db = withHosts(aRegister({ host: 'zeta' }), aRegister({ host: 'alpha', serverId: 's9' }));
  const list = listHosts(db);
  assert.deepEqual(list.map((h) => [h.host, h.serverId]), [['alpha', 's9'], ['zeta', 's1']]);
  assert.deepEqual(Object.keys(list[0]!).sort(), ['draining', 'host', 'inventory', 'lastSeenAt', 'registeredAt', 'serverId', 'slots']);
});

test('registry-database - repeated slot indexes are refused, naming the slot', () => {
  const dup = [{ index: 0, state: 'idle' as const }, { index: 0, state: 'busy' as const }];
  for (const check of [() => checkRegistration(aRegister({ slots: dup })), () => checkHeartbeat(aHeartbeat({ slots: dup }))]) {
    assert.throws(check, (err: unknown) => err instanceof FarmError && err.code === 'RB_SCHEMA_MISMATCH' && /\/slots\/1\/index: slot index 0 appears twice/.test(err.message));
  }
  assert.doesNotThrow(() => checkRegistration(aRegister()));
});

test('registry-database - counts hosts across writes and leaves earlier databases unchanged', () => {
  let db = emptyDatabase();
  const names = Array.from({ length: 300 }, (_, i) => `host-${i}`);
  for (const host of names) db = registerHost(db, aRegister({ host }), 1_000).db;
  const full = db;
  db = registerHost(db, aRegister({ host: 'host-7' }), 2_000).db;
  db = registerHost(db, aRegister({ host: 'host-8', serverId: 's2' }), 2_000).db;
  assert.equal(db.size, 300, 'registering a known host again adds nothing');
  for (const host of names.slice(0, 100)) db = removeHost(db, { v: 1, host, serverId: host === 'host-8' ? 's2' : 's1' }).db;
  assert.equal(db.size, 200);
  assert.deepEqual(listHosts(db).map((h) => h.host), names.slice(100).sort());
  assert.equal(match(db, {}).totalHosts, 200);
  assert.equal(full.size, 300);
  assert.equal(listHosts(full).length, 300);
  assert.equal(hostEntry(full, 'host-8')?.record.serverId, 's1');
  db = sweepSilent(db, 1_000 + 3_001, 3).db;
  assert.equal(db.size, 0);
  assert.deepEqual(listHosts(db), []);
});
