import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test, type TestContext } from 'node:test';
import { call } from '../../actors/bus/index.ts';
import { listAllHosts, startRegistry } from '../../actors/registry/index.ts';
import { silentLogger } from '../../sites/logger.ts';
import { ANY_HOST, codecs, encodeAny, FarmError, MAX_PAYLOAD, PROTOCOL_MAJOR, Role, subjects, type HostInventory, type ListRequest } from '../../protocol/index.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import { anInventory } from '../helpers/builders.ts';

const v = PROTOCOL_MAJOR;

let nats: Awaited<ReturnType<typeof startNatsServer>>;
before(async () => {
  nats = await startNatsServer();
});
after(async () => {
  await nats.stop();
});

/** A client connection, a fresh site and a real registry on it, stopped after the test. */
async function setup(t: TestContext) {
  const site = `t${randomUUID().slice(0, 8)}`;
  const nc = await nats.connectAs(site, Role.Operator, 'op');
  const hostNc = await nats.connectAs(site, Role.RenderServer, ANY_HOST); // registers hosts as render servers do
  const regNc = await nats.connectAs(site, Role.Registry);
  const registry = await startRegistry({ nc: regNc, site, log: silentLogger(), announceMs: 1_000 });
  t.after(async () => {
    await registry.stop();
    await regNc.drain();
    await hostNc.drain();
    await nc.drain();
  });
  /** Registers hosts as render servers do (reg.register), in the order given. */
  const register = async (hosts: string[], inventory: HostInventory = anInventory()) => {
    for (const host of hosts) {
      await call(hostNc, subjects.regRegister(site, host), codecs.hostRegister, { v, host, serverId: `s-${host}`, inventory, slots: [{ index: 0, state: 'idle' }], heartbeatMs: 60_000 }, codecs.hostRegisterReply);
    }
  };
  /** One raw reg.list request: the reply envelope and its size on the wire. */
  const page = async (req: Record<string, unknown>) => {
    const m = await nc.request(subjects.regList(site), encodeAny({ v, ...req }), { timeout: 5_000 });
    return { env: codecs.listReply.decode(m.data), bytes: m.data.length };
  };
  return { nc, site, registry, register, page };
}

/** 30 host names, registered shuffled: the registry sorts them. */
const NAMES = Array.from({ length: 30 }, (_, i) => `node-${String(i).padStart(2, '0')}`);
const shuffled = () => NAMES.map((n, i) => [n, (i * 17) % 30] as const).sort((a, b) => a[1] - b[1]).map(([n]) => n);

test('registry-list - 30 hosts in pages of 7: each host exactly once, in name order', async (t) => {
  const { nc, site, registry, register, page } = await setup(t);
  await register(shuffled());

  const all = await listAllHosts(nc, site, { timeoutMs: 2_000, pageSize: 7 });
  assert.equal(all.registryId, registry.registryId);
  assert.deepEqual(all.hosts.map((h) => h.host), NAMES);
  assert.deepEqual(all.hosts.map((h) => h.serverId), NAMES.map((n) => `s-${n}`));

  // the pages themselves: 7, 7, 7, 7, 2, each after the last host of the one before
  const sizes: number[] = [];
  const seen: string[] = [];
  let cursor: ListRequest['after'];
  for (;;) {
    const { env } = await page({ limit: 7, ...(cursor ? { after: cursor } : {}) });
    assert.ok(env.ok, JSON.stringify(env));
    sizes.push(env.body.hosts.length);
    seen.push(...env.body.hosts.map((h) => h.host));
    assert.equal(typeof env.body.more, 'boolean');
    if (!env.body.more) break;
    cursor = env.body.hosts.at(-1)!.host;
  }
  assert.deepEqual(sizes, [7, 7, 7, 7, 2]);
  assert.deepEqual(seen, NAMES);

  // an old client, `{ v }` alone: a valid first page, here every host
  const old = await call(nc, subjects.regList(site), codecs.listRequest, { v }, codecs.listReply);
  assert.deepEqual(old.hosts.map((h) => h.host), NAMES);
  assert.equal(old.more, false);
  // a cursor past the end, or between names
  const { env: end } = await page({ after: 'node-29' });
  assert.ok(end.ok);
  assert.deepEqual([end.body.hosts, end.body.more], [[], false]);
  const { env: mid } = await page({ after: 'node-115', limit: 2 });
  assert.ok(mid.ok);
  assert.deepEqual([mid.body.hosts.map((h) => h.host), mid.body.more], [['node-12', 'node-13'], true]);
});

test('registry-list - a page is cut at what fits one message, and the pages still give every host', async (t) => {
  const { nc, site, register, page } = await setup(t);
  // ~64 KiB of packages per host: 30 of them are about 2 MiB, twice the max payload
  const heavy = anInventory({ packages: Array.from({ length: 2_000 }, (_, i) => ({ name: `package-${String(i).padStart(4, '0')}`, version: '1.2.3' })) });
  await register(shuffled(), heavy);

  const first = await page({});
  assert.ok(first.env.ok, JSON.stringify(first.env).slice(0, 300));
  const n = first.env.body.hosts.length;
  assert.ok(n > 5 && n < 30, `the first page holds ${n} hosts`);
  assert.equal(first.env.body.more, true);
  assert.deepEqual(first.env.body.hosts.map((h) => h.host), NAMES.slice(0, n));
  const maxPayload = Math.min(MAX_PAYLOAD, nc.info?.max_payload ?? MAX_PAYLOAD);
  assert.ok(first.bytes <= maxPayload, `a reply of ${first.bytes} bytes, over ${maxPayload}`);
  assert.ok(first.bytes > maxPayload * 0.9, `a reply of ${first.bytes} bytes leaves most of the message unused`);

  // a limit above what fits is cut the same way; one below it wins
  const limited = await page({ limit: 25 });
  assert.ok(limited.env.ok);
  assert.equal(limited.env.body.hosts.length, n);
  const small = await page({ limit: 3 });
  assert.ok(small.env.ok);
  assert.deepEqual(small.env.body.hosts.map((h) => h.host), NAMES.slice(0, 3));

  const all = await listAllHosts(nc, site, { timeoutMs: 5_000 });
  assert.deepEqual(all.hosts.map((h) => h.host), NAMES);
  assert.ok(all.hosts.every((h) => h.inventory.packages.length === 2_000));
});

test('registry-list - a bad cursor or limit is refused naming the field', async (t) => {
  const { nc, site, register, page } = await setup(t);
  await register(['alpha']);
  for (const [req, field] of [
    [{ limit: 0 }, '/limit'],
    [{ limit: -4 }, '/limit'],
    [{ limit: 2.5 }, '/limit'],
    [{ limit: '7' }, '/limit'],
    [{ after: 42 }, '/after'],
    [{ after: 'Not A Host' }, '/after'],
  ] as const) {
    const { env } = await page(req);
    assert.ok(!env.ok, `${JSON.stringify(req)} was answered`);
    assert.equal(env.error.code, 'RB_SCHEMA_MISMATCH');
    assert.ok(env.error.message.startsWith(`${field}:`), env.error.message);
  }
  await assert.rejects(listAllHosts(nc, site, { timeoutMs: 1_000, pageSize: 0 }), (err: unknown) => err instanceof FarmError && err.code === 'RB_BAD_ARGUMENT');
  // it keeps serving
  assert.deepEqual((await listAllHosts(nc, site, { timeoutMs: 1_000 })).hosts.map((h) => h.host), ['alpha']);
});

test('registry-list - nobody answering is RB_REGISTRY_UNAVAILABLE', async () => {
  const nc = await nats.connectAs('nobody-here', Role.Operator, 'op');
  try {
    await assert.rejects(listAllHosts(nc, 'nobody-here', { timeoutMs: 300 }), (err: unknown) => err instanceof FarmError && err.code === 'RB_REGISTRY_UNAVAILABLE' && err.retryable);
  } finally {
    await nc.drain();
  }
});
