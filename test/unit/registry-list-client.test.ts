import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emptyDatabase, listPage, registerHost, type RegistryDatabase } from '../../actors/registry/database.ts';
import { pageAllHosts, type ListPageRequest } from '../../actors/registry/index.ts';
import { FarmError, type ListRequest } from '../../protocol/index.ts';
import { anInventory } from '../helpers/builders.ts';

function withHosts(names: string[]): RegistryDatabase {
  return names.reduce(
    (db, host) => registerHost(db, { v: 1, host, serverId: `s-${host}`, inventory: anInventory(), slots: [], heartbeatMs: 1_000 }, 1_000).db,
    emptyDatabase(),
  );
}

/** A registry answered by hand: `registryId(n)` for the n-th request (from 1), pages of at most `cap` hosts. */
function aRegistry(db: RegistryDatabase, o: { cap?: number; registryId?: (n: number) => string } = {}) {
  const asked: ListRequest[] = [];
  const page: ListPageRequest = async (req) => {
    asked.push(req);
    const p = listPage(db, { after: req.after, limit: Math.min(req.limit ?? Infinity, o.cap ?? Infinity), budget: Infinity, fixed: 0, sizeOf: () => 1 });
    return { registryId: o.registryId?.(asked.length) ?? 'r1', ...p };
  };
  return { page, asked };
}

const NAMES = Array.from({ length: 23 }, (_, i) => `host-${String(i).padStart(2, '0')}`);

test('registry-list-client - pages through every host, after the last of each page, with the page size as limit', async () => {
  const reg = aRegistry(withHosts(NAMES));
  const all = await pageAllHosts(reg.page, 10);
  assert.equal(all.registryId, 'r1');
  assert.deepEqual(all.hosts.map((h) => h.host), NAMES);
  assert.deepEqual(reg.asked, [{ v: 1, limit: 10 }, { v: 1, limit: 10, after: 'host-09' }, { v: 1, limit: 10, after: 'host-19' }]);
});

test('registry-list-client - without a page size the registry decides (what fits one message)', async () => {
  const reg = aRegistry(withHosts(NAMES), { cap: 8 });
  const all = await pageAllHosts(reg.page);
  assert.deepEqual(all.hosts.map((h) => h.host), NAMES);
  assert.deepEqual(reg.asked.map((r) => [r.after, r.limit]), [[undefined, undefined], ['host-07', undefined], ['host-15', undefined]]);
  assert.deepEqual((await pageAllHosts(aRegistry(emptyDatabase()).page, 5)).hosts, []);
});

test('registry-list-client - a registry older than paging (no more) answers everything at once', async () => {
  const all = await pageAllHosts(async () => ({ registryId: 'old', hosts: (await aRegistry(withHosts(NAMES)).page({ v: 1 })).hosts }));
  assert.equal(all.hosts.length, NAMES.length);
});

test('registry-list-client - a registry that restarts between pages: the listing starts over, once', async () => {
  // requests 1-2 see r1, then r2 answers: the third page comes from another database
  const reg = aRegistry(withHosts(NAMES), { registryId: (n) => (n <= 2 ? 'r1' : 'r2') });
  const all = await pageAllHosts(reg.page, 10);
  assert.equal(all.registryId, 'r2');
  assert.deepEqual(all.hosts.map((h) => h.host), NAMES, 'each host once, none from the first pass');
  assert.deepEqual(reg.asked.map((r) => r.after), [undefined, 'host-09', 'host-19', undefined, 'host-09', 'host-19']);
});

test('registry-list-client - a registry that restarts again on the retry is a clear error', async () => {
  const reg = aRegistry(withHosts(NAMES), { registryId: (n) => `r${Math.ceil(n / 2)}` });
  await assert.rejects(pageAllHosts(reg.page, 10), (err: unknown) => {
    assert.ok(err instanceof FarmError);
    assert.equal(err.code, 'RB_REGISTRY_UNAVAILABLE');
    assert.equal(err.retryable, true);
    assert.match(err.message, /the registry restarted while its hosts were being listed, and again on the retry \(registry r1 → r2, then r2 → r3\)/);
    return true;
  });
  assert.equal(reg.asked.length, 5, 'two passes cut short, then it gives up');
});

test('registry-list-client - a page that says more but does not move on is an error, not a loop', async () => {
  const stuck = withHosts(['a', 'b']);
  await assert.rejects(
    pageAllHosts(async () => ({ registryId: 'r1', hosts: [], more: true })),
    (err: unknown) => err instanceof FarmError && /registry r1 says more hosts follow, but its page was empty/.test(err.message),
  );
  await assert.rejects(
    pageAllHosts(async () => ({ registryId: 'r1', hosts: listPage(stuck, { budget: Infinity, fixed: 0, sizeOf: () => 1, limit: 1 }).hosts, more: true })),
    (err: unknown) => err instanceof FarmError && /its page ended at 'a', not after 'a'/.test(err.message),
  );
});

test('registry-list-client - a page size that is not a whole number of hosts is refused', async () => {
  for (const bad of [0, -3, 2.5, Number.NaN]) {
    await assert.rejects(pageAllHosts(aRegistry(emptyDatabase()).page, bad), (err: unknown) => err instanceof FarmError && err.code === 'RB_BAD_ARGUMENT' && /pageSize must be a whole number of hosts, at least 1, not/.test(err.message));
  }
});
