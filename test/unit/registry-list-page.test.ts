import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emptyDatabase, listHosts, listPage, registerHost, type PageOptions, type RegistryDatabase } from '../../actors/registry/database.ts';
import { encodeAny, FarmError, type HostRecord, type HostRegister } from '../../protocol/index.ts';
import { anInventory } from '../helpers/builders.ts';

function aRegister(host: string, o: Partial<HostRegister> = {}): HostRegister {
  return { v: 1, host, serverId: `s-${host}`, inventory: anInventory(), slots: [{ index: 0, state: 'idle' }], heartbeatMs: 1_000, ...o };
}

function withHosts(names: string[]): RegistryDatabase {
  return names.reduce((db, host) => registerHost(db, aRegister(host), 1_000).db, emptyDatabase());
}

/** No size cap to speak of: only `after` and `limit` shape the page. */
const roomy = (o: Partial<PageOptions> = {}): PageOptions => ({ budget: Infinity, fixed: 0, sizeOf: () => 1, ...o });
const names = (hosts: HostRecord[]) => hosts.map((h) => h.host);

// registered out of order, and spread over the database's buckets
const HOSTS = ['node-10', 'node-2', 'alpha', 'node-1', 'zulu', 'beta-7', 'beta-10', 'node-20'];
const SORTED = [...HOSTS].sort();

test('registry-list-page - the first page is every host sorted by name, with nothing more', () => {
  const page = listPage(withHosts(HOSTS), roomy());
  assert.deepEqual(names(page.hosts), SORTED);
  assert.deepEqual(SORTED.slice(0, 3), ['alpha', 'beta-10', 'beta-7'], 'sorted as strings, as the cursor compares');
  assert.equal(page.more, false);
  assert.deepEqual(page.hosts, listHosts(withHosts(HOSTS)), 'the records as they are');
  assert.deepEqual(listPage(emptyDatabase(), roomy()), { hosts: [], more: false });
});

test('registry-list-page - after: only the hosts whose names sort strictly after it, known or not', () => {
  const db = withHosts(HOSTS);
  assert.deepEqual(names(listPage(db, roomy({ after: 'node-10' })).hosts), ['node-2', 'node-20', 'zulu'], 'a host that is listed: strictly after it');
  assert.deepEqual(names(listPage(db, roomy({ after: 'gamma' })).hosts), ['node-1', 'node-10', 'node-2', 'node-20', 'zulu'], 'a name nobody has (a host that left): where it would sort');
  assert.deepEqual(listPage(db, roomy({ after: 'zulu' })), { hosts: [], more: false });
  assert.deepEqual(names(listPage(db, roomy({ after: '0' })).hosts), SORTED);
});

test('registry-list-page - limit caps the page; more says whether hosts follow', () => {
  const db = withHosts(HOSTS);
  const first = listPage(db, roomy({ limit: 3 }));
  assert.deepEqual(names(first.hosts), ['alpha', 'beta-10', 'beta-7']);
  assert.equal(first.more, true);
  const last = listPage(db, roomy({ after: 'node-10', limit: 3 }));
  assert.deepEqual(names(last.hosts), ['node-2', 'node-20', 'zulu']);
  assert.equal(last.more, false, 'exactly the last hosts: nothing more');
  assert.equal(listPage(db, roomy({ limit: HOSTS.length + 5 })).more, false);
  assert.equal(listPage(db, roomy({ limit: 1 })).hosts.length, 1);
});

test('registry-list-page - walking the pages gives every host exactly once, in order', () => {
  const many = Array.from({ length: 103 }, (_, i) => `h-${(i * 37) % 103}`);
  const db = withHosts(many);
  const seen: string[] = [];
  let after: string | undefined;
  for (let pages = 1; ; pages++) {
    const page = listPage(db, roomy({ after, limit: 10 }));
    seen.push(...names(page.hosts));
    if (!page.more) {
      assert.equal(pages, 11);
      break;
    }
    after = page.hosts.at(-1)!.host;
  }
  assert.deepEqual(seen, [...many].sort());
});

test('registry-list-page - a page stops at what fits the byte budget', () => {
  const db = withHosts(HOSTS);
  const sizeOf = (h: HostRecord) => encodeAny(h).length;
  const one = sizeOf(listHosts(db)[0]!);
  const fixed = 40;
  // room for three hosts of this size (they differ by a byte or two), not four
  const budget = fixed + one * 3 + Math.floor(one / 2);
  const page = listPage(db, { budget, fixed, sizeOf });
  assert.deepEqual(names(page.hosts), SORTED.slice(0, 3));
  assert.equal(page.more, true);
  const used = fixed + page.hosts.reduce((n, h) => n + sizeOf(h), 0);
  assert.ok(used <= budget, `${used} bytes in a budget of ${budget}`);
  // the tighter of the two caps wins
  assert.deepEqual(names(listPage(db, { budget, fixed, sizeOf, limit: 2 }).hosts), SORTED.slice(0, 2));
  assert.deepEqual(names(listPage(db, { budget, fixed, sizeOf, limit: 5 }).hosts), SORTED.slice(0, 3));
  // the next page goes on from there, under the same budget
  const next = listPage(db, { budget, fixed, sizeOf, after: page.hosts.at(-1)!.host });
  assert.deepEqual(names(next.hosts), SORTED.slice(3, 6));
  // a budget that holds exactly the hosts: all of them, nothing more
  const exact = fixed + listHosts(db).reduce((n, h) => n + sizeOf(h), 0);
  assert.deepEqual(listPage(db, { budget: exact, fixed, sizeOf }), { hosts: listHosts(db), more: false });
  assert.equal(listPage(db, { budget: exact - 1, fixed, sizeOf }).more, true);
});

test('registry-list-page - a host too large for any reply is an error naming it, not an empty page forever', () => {
  const big = anInventory({ packages: Array.from({ length: 200 }, (_, i) => ({ name: `package-${i}`, version: '1.0.0' })) });
  const db = registerHost(withHosts(['alpha', 'zulu']), aRegister('mammoth', { inventory: big }), 1_000).db;
  const sizeOf = (h: HostRecord) => encodeAny(h).length;
  const budget = 100 + sizeOf(listHosts(db)[0]!) * 2;
  assert.deepEqual(names(listPage(db, { budget, fixed: 100, sizeOf }).hosts), ['alpha'], 'a page before it ends short of it');
  assert.throws(
    () => listPage(db, { budget, fixed: 100, sizeOf, after: 'alpha' }),
    (err: unknown) => err instanceof FarmError && /host mammoth's record is \d+ bytes, more than one reply carries \(\d+\)/.test(err.message),
  );
});
