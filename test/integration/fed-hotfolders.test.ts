import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FarmError } from '../../protocol/index.ts';
import { dropFile, ensureHotFolders, HotFolderWatcher, type HotFolderDirs, type HotFolderOptions, type HotOutcome } from '../../sites/hotfolders/index.ts';

interface Harness {
  dirs: HotFolderDirs;
  handled: string[];
  outcomes: HotOutcome[];
  watcher: HotFolderWatcher;
  /** Resolves once `pred` holds (checked at every outcome and scan); fails after 20 s. */
  until(pred: () => boolean, what: string): Promise<void>;
}

async function harness(t: { after(fn: () => Promise<void>): void }, opts: Partial<HotFolderOptions> = {}, data?: string): Promise<Harness> {
  const root = data ?? (await mkdtemp(join(tmpdir(), 'rb-hot-')));
  if (!data) t.after(() => rm(root, { recursive: true, force: true }));
  const dirs = await ensureHotFolders(root, 'v1');
  const handled: string[] = [];
  const outcomes: HotOutcome[] = [];
  const waiters = new Set<() => void>();
  const poke = () => { for (const w of waiters) w(); };
  const watcher = new HotFolderWatcher({
    dir: dirs.incoming,
    processedDir: dirs.processed,
    failedDir: dirs.failed,
    handle: async (f) => { handled.push(f.name); await readFile(f.path); },
    scanEveryMs: 3_600_000, // fs.watch alone, unless a test says otherwise
    ...opts,
    onOutcome: (o) => { outcomes.push(o); opts.onOutcome?.(o); poke(); },
    onScan: (n) => { opts.onScan?.(n); poke(); },
  });
  t.after(() => watcher.stop());
  const until = (pred: () => boolean, what: string) => new Promise<void>((resolve, reject) => {
    const check = () => { if (pred()) { waiters.delete(check); clearTimeout(timer); resolve(); } };
    const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`timed out waiting for ${what}; outcomes ${JSON.stringify(outcomes.map((o) => [o.name, o.to]))}`)); }, 20_000);
    waiters.add(check);
    check();
  });
  return { dirs, handled, outcomes, watcher, until };
}

const count = (list: string[], name: string) => list.filter((n) => n === name).length;

test('hot folders - the layout is created per peer with its modes, whatever the umask', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'rb-hot-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const old = process.umask(0o077);
  try {
    const dirs = await ensureHotFolders(root, 'v1');
    assert.equal(dirs.outgoing, join(root, 'hotfolders', 'outgoing', 'v1'));
    const mode = async (p: string) => (await stat(p)).mode & 0o777;
    assert.equal(await mode(dirs.outgoing), 0o770);
    assert.equal(await mode(dirs.incoming), 0o770);
    assert.equal(await mode(dirs.processed), 0o750);
    assert.equal(await mode(dirs.failed), 0o750);
    assert.equal(await mode(join(root, 'hotfolders')), 0o750);
  } finally {
    process.umask(old);
  }
  await assert.rejects(ensureHotFolders(root, '../x'), (e: unknown) => e instanceof FarmError && e.code === 'RB_BAD_PEER');
});

test('hot folders - a bundle copied in by hand is handled once (fs.watch, no scan) and moved to processed/', async (t) => {
  const h = await harness(t);
  await h.watcher.start();
  await writeFile(join(h.dirs.incoming, 'hand.rbb'), 'bundle bytes');
  await h.until(() => h.outcomes.length === 1, 'the bundle');
  assert.deepEqual(h.handled, ['hand.rbb']);
  assert.deepEqual(h.outcomes.map((o) => [o.name, o.to, o.path]), [['hand.rbb', 'processed', join(h.dirs.processed, 'hand.rbb')]]);
  assert.equal(await readFile(join(h.dirs.processed, 'hand.rbb'), 'utf8'), 'bundle bytes');
  assert.deepEqual(await readdir(h.dirs.incoming), []);
});

test('hot folders - with fs.watch off (NFS) the periodic scan finds a bundle', async (t) => {
  const h = await harness(t, { watch: false, scanEveryMs: 50 });
  await h.watcher.start();
  await dropFile(h.dirs.incoming, 'nfs.rbb', Buffer.from('x'));
  await h.until(() => h.outcomes.length === 1, 'the bundle');
  assert.deepEqual(h.handled, ['nfs.rbb']);
});

test('hot folders - .part files and dotfiles are ignored until renamed to .rbb', async (t) => {
  const h = await harness(t);
  await h.watcher.start();
  await writeFile(join(h.dirs.incoming, 'a.rbb.part'), 'half');
  await writeFile(join(h.dirs.incoming, '.b.rbb'), 'hidden');
  await writeFile(join(h.dirs.incoming, 'notes.txt'), 'not a bundle');
  await dropFile(h.dirs.incoming, 'c.rbb', Buffer.from('c')); // the proof the watcher looked after a and b were there
  await h.until(() => h.outcomes.length === 1, 'c.rbb');
  assert.deepEqual(h.handled, ['c.rbb']);
  await rename(join(h.dirs.incoming, 'a.rbb.part'), join(h.dirs.incoming, 'a.rbb'));
  await h.until(() => h.outcomes.length === 2, 'a.rbb');
  assert.deepEqual(h.handled, ['c.rbb', 'a.rbb']);
  assert.deepEqual((await readdir(h.dirs.incoming)).sort(), ['.b.rbb', 'notes.txt']);
});

test('hot folders - a failing handler sends the file to failed/ with a reason naming the error; a retryable one is retried', async (t) => {
  let flaky = 0;
  const h = await harness(t, {
    scanEveryMs: 50,
    handle: async (f) => {
      if (f.name === 'bad.rbb') throw new FarmError('RB_BAD_BLOB', 'blob 00ff: its 3 bytes hash to abcd');
      if (f.name === 'boom.rbb') throw new Error('intake crashed');
      if (f.name === 'flaky.rbb' && flaky++ === 0) throw new FarmError('RB_SCHEDULER_UNAVAILABLE', undefined, { retryable: true });
      await Promise.resolve();
    },
  });
  await h.watcher.start();
  for (const n of ['bad.rbb', 'boom.rbb', 'flaky.rbb']) await dropFile(h.dirs.incoming, n, Buffer.from(n));
  await h.until(() => h.outcomes.filter((o) => o.to !== 'retry').length === 3, 'three fates');
  const fate = Object.fromEntries(h.outcomes.filter((o) => o.to !== 'retry').map((o) => [o.name, o.to]));
  assert.deepEqual(fate, { 'bad.rbb': 'failed', 'boom.rbb': 'failed', 'flaky.rbb': 'processed' });
  assert.deepEqual(h.outcomes.filter((o) => o.to === 'retry').map((o) => o.name), ['flaky.rbb']);
  assert.deepEqual((await readdir(h.dirs.failed)).sort(), ['bad.rbb', 'bad.rbb.reason.txt', 'boom.rbb', 'boom.rbb.reason.txt']);
  const reason = await readFile(join(h.dirs.failed, 'bad.rbb.reason.txt'), 'utf8');
  assert.match(reason, /^RB_BAD_BLOB: blob 00ff: its 3 bytes hash to abcd\n/);
  assert.match(reason, /file: bad.rbb/);
  assert.match(await readFile(join(h.dirs.failed, 'boom.rbb.reason.txt'), 'utf8'), /^RB_HANDLER_FAILED: intake crashed\n/);
  assert.equal(await readFile(join(h.dirs.failed, 'bad.rbb'), 'utf8'), 'bad.rbb');
  assert.deepEqual(await readdir(h.dirs.incoming), []);
});

test('hot folders - a retryable failure that keeps failing goes to failed/ after maxAttempts, the reason counting them', async (t) => {
  const h = await harness(t, {
    scanEveryMs: 20,
    maxAttempts: 3,
    handle: async (f) => { h.handled.push(f.name); await Promise.reject(new FarmError('RB_SCHEDULER_UNAVAILABLE', undefined, { retryable: true })); },
  });
  await h.watcher.start();
  await dropFile(h.dirs.incoming, 'busy.rbb', Buffer.from('x'));
  await h.until(() => h.outcomes.some((o) => o.to === 'failed'), 'busy.rbb failed');
  assert.deepEqual(h.outcomes.map((o) => o.to), ['retry', 'retry', 'failed']);
  assert.equal(h.handled.length, 3);
  const reason = await readFile(join(h.dirs.failed, 'busy.rbb.reason.txt'), 'utf8');
  assert.match(reason, /^RB_SCHEDULER_UNAVAILABLE: /);
  assert.match(reason, /attempts: 3/);
});

test('hot folders - a symbolic link is not followed: it goes to failed/ unhandled, its target untouched', async (t) => {
  const h = await harness(t);
  const target = join(h.dirs.processed, '..', '..', 'secret');
  await writeFile(target, 'secret');
  await symlink(target, join(h.dirs.incoming, 'link.rbb'));
  await h.watcher.start();
  await h.until(() => h.outcomes.length === 1, 'the link');
  assert.deepEqual(h.handled, []);
  assert.equal(h.outcomes[0]!.to, 'failed');
  assert.match(await readFile(join(h.dirs.failed, 'link.rbb.reason.txt'), 'utf8'), /^RB_NOT_REGULAR_FILE: link.rbb is not a regular file/);
  assert.equal(await readFile(target, 'utf8'), 'secret');
});

test('hot folders - a watcher stopped mid-handling and started again handles each waiting file once', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'rb-hot-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const dirs = await ensureHotFolders(root, 'v1');
  const names = ['r1.rbb', 'r2.rbb', 'r3.rbb', 'r4.rbb', 'r5.rbb'];
  for (const n of names) await dropFile(dirs.incoming, n, Buffer.from(n));
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  let entered!: () => void;
  const inHand = new Promise<void>((r) => { entered = r; });
  const first = await harness(t, { handle: async (f) => { first.handled.push(f.name); entered(); await gate; } }, root);
  await first.watcher.start();
  await inHand;
  const stopping = first.watcher.stop();
  release();
  await stopping;
  assert.deepEqual(first.handled, ['r1.rbb']);
  assert.deepEqual(await readdir(dirs.processed), ['r1.rbb']);
  const second = await harness(t, {}, root);
  await second.watcher.start();
  await second.until(() => second.outcomes.length === 4, 'the four left');
  assert.deepEqual(second.handled, names.slice(1));
  assert.deepEqual((await readdir(dirs.processed)).sort(), names);
});

test('hot folders - a burst of 200 bundles: each handled exactly once', async (t) => {
  const h = await harness(t, { scanEveryMs: 200 });
  await h.watcher.start();
  const names = Array.from({ length: 200 }, (_, i) => `burst-${String(i).padStart(3, '0')}.rbb`);
  await Promise.all(names.map((n) => dropFile(h.dirs.incoming, n, Buffer.from(n))));
  await h.until(() => h.outcomes.length >= 200, '200 bundles');
  for (const n of names) assert.equal(count(h.handled, n), 1, n);
  assert.equal(h.handled.length, 200);
  assert.deepEqual((await readdir(h.dirs.processed)).sort(), names);
  assert.deepEqual(await readdir(h.dirs.incoming), []);
});

test('hot folders - a name processed before lands beside it; dropFile refuses bad names and a name already waiting', async (t) => {
  const h = await harness(t);
  await h.watcher.start();
  await dropFile(h.dirs.incoming, 'same.rbb', Buffer.from('one'));
  await h.until(() => h.outcomes.length === 1, 'the first');
  await dropFile(h.dirs.incoming, 'same.rbb', Buffer.from('two'));
  await h.until(() => h.outcomes.length === 2, 'the second');
  assert.equal(await readFile(join(h.dirs.processed, 'same.rbb'), 'utf8'), 'one');
  assert.equal(await readFile(join(h.dirs.processed, 'same.1.rbb'), 'utf8'), 'two');
  await h.watcher.stop();
  for (const bad of ['../x.rbb', '.x.rbb', 'x.tar', 'x.rbb.part', 'a/b.rbb', '']) {
    await assert.rejects(dropFile(h.dirs.incoming, bad, Buffer.from('x')), (e: unknown) => e instanceof FarmError && e.code === 'RB_BAD_ARGUMENT', bad);
  }
  await dropFile(h.dirs.incoming, 'wait.rbb', Buffer.from('first'));
  await assert.rejects(dropFile(h.dirs.incoming, 'wait.rbb', Buffer.from('second')), /already exists/);
  assert.equal(await readFile(join(h.dirs.incoming, 'wait.rbb'), 'utf8'), 'first');
  assert.deepEqual(await readdir(h.dirs.incoming), ['wait.rbb']);
});
