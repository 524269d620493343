import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createReadStream, writeFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import pino from 'pino';
import { LinkState, PROTOCOL_MAJOR, Role, linkCodecs, manifestBlobs, streams, subjects, type BundleManifest } from '../../protocol/index.ts';
import { newBundleId, readBundle, writeBundle } from '../../sites/bundles/index.ts';
import { hotFolderDirs } from '../../sites/hotfolders/index.ts';
import { loadSiteKey, startSiteLinks, type SiteLinksHandle } from '../../sites/links/index.ts';
import { startFedSites, waitLinkUp, type FedSite, type FedSites } from '../helpers/fed-sites.ts';
import { waitUntil } from '../helpers/farm.ts';

// Issue 14, "The site link" (docs/federation.md): bundles dropped in one site's outgoing/<peer>/
// appear in the peer's incoming/<us>/, over real nats-servers linked by leafs through TCP proxies
// that count bytes and can cut the link.

let f: FedSites;
let src: string; // the studio's and v1's "project" files (not under /tmp: bundle paths may not be)
const conns: NatsConnection[] = [];
const services = new Map<string, SiteLinksHandle>();
const logs: { msg: string; peer?: string; bundleId?: string }[] = [];
const peerKeys: { site: string; peer: string; key: string }[] = [];

const peersOf = (s: FedSite) => s.links.peers.map((p) => p.name);

async function startLinks(s: FedSite): Promise<SiteLinksHandle> {
  const farm = await s.connectAs(Role.SiteLink);
  conns.push(farm);
  const peers = [];
  for (const name of peersOf(s)) {
    const dmz = await s.connectDmz(name);
    conns.push(dmz);
    peers.push({ name, dmz });
  }
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as { msg: string }) });
  const h = await startSiteLinks({ site: s.name, dataDir: s.dir, farm, peers, log, scanEveryMs: 200, onPeerKey: (peer, key) => peerKeys.push({ site: s.name, peer, key }) });
  services.set(s.name, h);
  return h;
}

async function project(name: string, sizes: number[]): Promise<string[]> {
  const dir = join(src, name);
  await rm(dir, { recursive: true, force: true });
  await mkdtemp(join(src, 'x')).then((d) => rm(d, { recursive: true }));
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const [i, size] of sizes.entries()) {
    const p = join(dir, `f${i}.bin`);
    await writeFile(p, randomBytes(size));
    paths.push(p);
  }
  return paths;
}

/** Writes a bundle of `files` from `from` to `to` straight into from's outgoing/<to>/ (as the writer does: .part, then rename). */
async function drop(from: FedSite, to: string, files: string[], folder = to): Promise<{ name: string; path: string; manifest: BundleManifest }> {
  const bundleId = newBundleId();
  const name = `${bundleId}.rbb`;
  const dirs = hotFolderDirs(from.dir, folder);
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dirs.outgoing, { recursive: true });
  const staged = join(src, name);
  const manifest = await writeBundle({ head: { kind: 'status', bundleId, from: from.name, to, route: [] }, files, out: staged, dataDir: from.dir, sign: await loadSiteKey(from.dir) }); // signed, as the packer and returner write
  const { rename } = await import('node:fs/promises');
  await rename(staged, join(dirs.outgoing, name));
  return { name, path: join(dirs.outgoing, name), manifest };
}

const sha = async (p: string) => createHash('sha256').update(await readFile(p)).digest('hex');

async function arrived(at: FedSite, from: string, name: string, timeoutMs = 20_000): Promise<string> {
  const p = join(hotFolderDirs(at.dir, from).incoming, name);
  await waitUntil(`${name} to arrive at ${at.name}`, () => readdir(hotFolderDirs(at.dir, from).incoming).then((n) => n.includes(name)), timeoutMs, 50);
  return p;
}

async function processedAt(s: FedSite, peer: string, name: string, timeoutMs = 60_000): Promise<void> {
  await waitUntil(`${name} to move to processed/ at ${s.name}`, () => readdir(hotFolderDirs(s.dir, peer).processed).then((n) => n.includes(name), () => false), timeoutMs, 50);
}

before(async () => {
  src = await mkdtemp('/var/tmp/rb-fed-transfer-');
  f = await startFedSites();
  for (const v of f.vendors) await waitLinkUp(f.hub, v);
  for (const s of [f.hub, ...f.vendors]) await startLinks(s);
});

after(async () => {
  for (const s of services.values()) await s.stop();
  for (const nc of conns) await nc.close().catch(() => {});
  await f?.stop();
  await rm(src, { recursive: true, force: true });
});

test('fed-transfer - a bundle of a few MB crosses studio → v1 byte-identical, and v1 → studio', async () => {
  const files = await project('p1', [3 << 20, 1 << 20, 200_000, 17, 0]);
  const b = await drop(f.hub, 'v1', files);
  const want = await sha(b.path);
  const got = await arrived(f.site('v1'), 'studio', b.name);
  assert.equal(await sha(got), want, 'the bundle arrived byte-identical');
  await processedAt(f.hub, 'v1', b.name);

  const back = await drop(f.site('v1'), 'studio', await project('p1back', [2 << 20, 5]));
  const wantBack = await sha(back.path);
  assert.equal(await sha(await arrived(f.hub, 'v1', back.name)), wantBack);
  await processedAt(f.site('v1'), 'studio', back.name);
  // each site learnt the other's key from its hellos
  assert.ok(peerKeys.some((k) => k.site === 'v1' && k.peer === 'studio'));
  assert.ok(peerKeys.some((k) => k.site === 'studio' && k.peer === 'v1'));
});

/** Bytes of the vendor's leaf (both ways) while `fn` runs. */
async function linkBytes(vendor: string, fn: () => Promise<void>): Promise<number> {
  const b0 = f.proxy(vendor).bytes;
  await fn();
  return f.proxy(vendor).bytes - b0;
}

async function outboxMessages(s: FedSite, peer: string): Promise<number> {
  const nc = await s.connectDmz(peer);
  try {
    return (await (await jetstreamManager(nc)).streams.info(streams.fedOutbox)).state.messages;
  } finally {
    await nc.close();
  }
}

const received = (site: string, bundleId: string) => logs.filter((l) => l.msg === 'bundle received' && (l as { site?: string }).site === site && l.bundleId === bundleId).length;
const idOf = (name: string) => name.replace(/\.rbb$/, '');

test('fed-transfer - a second bundle with the same files re-sends no content; one changed file re-sends about that file', async () => {
  const files = await project('p2', [1 << 20, 1 << 20, 1 << 20, 1 << 20, 300_000]);
  const payload = 4 * (1 << 20) + 300_000;
  const first = await linkBytes('v1', async () => {
    const b = await drop(f.hub, 'v1', files);
    await arrived(f.site('v1'), 'studio', b.name);
    await processedAt(f.hub, 'v1', b.name);
  });
  assert.ok(first >= payload, `the first bundle put ${first} bytes on the link, at least its ${payload}`);
  const again = await linkBytes('v1', async () => {
    const b = await drop(f.hub, 'v1', files);
    const p = await arrived(f.site('v1'), 'studio', b.name);
    assert.equal(await sha(p), await sha(join(hotFolderDirs(f.hub.dir, 'v1').processed, b.name)).catch(async () => sha(b.path)));
    await processedAt(f.hub, 'v1', b.name);
  });
  assert.ok(again < 64 * 1024, `the same files again put ${again} bytes on the link: only the handshake`);
  await writeFile(files[2]!, randomBytes(1 << 20));
  const changed = await linkBytes('v1', async () => {
    const b = await drop(f.hub, 'v1', files);
    await arrived(f.site('v1'), 'studio', b.name);
    await processedAt(f.hub, 'v1', b.name);
  });
  assert.ok(changed >= 1 << 20 && changed < (1 << 20) * 1.1 + 64 * 1024, `one changed 1 MiB file put ${changed} bytes on the link`);
});

test('fed-transfer - a 24 MB file in content-defined chunks: 100 bytes changed in the middle, or 1 KB inserted near the start, re-send about one chunk', async () => {
  const [file] = await project('p10', [24 << 20]);
  const original = await readFile(file!);
  const seen = new Set<string>();
  /** Sends the file; returns the bytes on the link, the bytes of chunks not sent before, and how many. */
  const send = async () => {
    let fresh = 0;
    let freshChunks = 0;
    const bytes = await linkBytes('v1', async () => {
      const b = await drop(f.hub, 'v1', [file!]);
      for (const [h, size] of manifestBlobs(b.manifest)) {
        if (seen.has(h)) continue;
        seen.add(h);
        fresh += size;
        freshChunks++;
      }
      const want = await sha(b.path);
      const p = await arrived(f.site('v1'), 'studio', b.name);
      assert.equal(await sha(p), want, 'the bundle arrived byte-identical');
      await processedAt(f.hub, 'v1', b.name);
      // what intake reads: the chunks joined, the file as it was sent
      const r = await readBundle({ source: createReadStream(p), tempDir: src, dataDir: f.site('v1').dir });
      try {
        const fm = r.manifest.files[0]!;
        assert.ok(fm.chunks && fm.chunks.length > 10, 'the file travels in chunks');
        assert.equal(await sha(r.blobs.get(fm.sha256)!), await sha(file!), 'the received file is byte-identical');
      } finally {
        await rm(r.dir, { recursive: true, force: true });
      }
    });
    return { bytes, fresh, freshChunks };
  };
  const first = await send();
  assert.ok(first.bytes >= 24 << 20);
  const avgChunk = (24 << 20) / first.freshChunks;
  const edited = Buffer.from(original);
  randomBytes(100).copy(edited, 12 << 20);
  await writeFile(file!, edited);
  const middle = await send();
  await writeFile(file!, Buffer.concat([original.subarray(0, 4096), randomBytes(1024), original.subarray(4096)]));
  const inserted = await send();
  for (const [what, r] of [['100 bytes changed in the middle', middle], ['1 KB inserted near the start', inserted]] as const) {
    logs.push({ msg: `${what}: ${r.bytes} bytes on the link, ${r.freshChunks} new chunks of ${r.fresh} bytes` });
    assert.ok(r.freshChunks <= 2, `${what}: ${r.freshChunks} chunks changed`);
    assert.ok(r.bytes < r.fresh + 64 * 1024, `${what}: ${r.bytes} bytes on the link, the new chunks hold ${r.fresh}: only they crossed`);
    assert.ok(r.bytes < 3 * avgChunk, `${what}: ${r.bytes} bytes on the link, less than 3 chunks (${Math.round(avgChunk)} bytes each on average)`);
  }
});

test('fed-transfer - the link cut at ~30 % of an upload and restored: completes once, byte-identical, the outbox empty after the receipt', async () => {
  const files = await project('p3', Array.from({ length: 16 }, () => 2 << 20));
  const payload = 32 << 20;
  let name = '';
  const b0 = f.proxy('v1').bytes;
  const bytes = await linkBytes('v1', async () => {
    const b = await drop(f.hub, 'v1', files);
    name = b.name;
    const want = await sha(b.path);
    // the sources pull faster than the receiver stores, so the link's own byte count says how far the upload is
    await waitUntil('~30 % of the bundle to cross the link', () => f.proxy('v1').bytes - b0 >= payload * 0.3, 60_000, 1);
    f.proxy('v1').cut();
    const studio = services.get('studio')!;
    await waitUntil('the studio to see v1 down', () => studio.status().find((l) => l.peer === 'v1')?.state === LinkState.Down, 20_000);
    const atCut = f.proxy('v1').bytes - b0;
    f.proxy('v1').restore();
    const t0 = Date.now();
    const p = await arrived(f.site('v1'), 'studio', b.name, 60_000);
    logs.push({ msg: `cut at ${atCut} of ${payload} bytes; completed ${Date.now() - t0} ms after the restore` });
    assert.equal(await sha(p), want);
    await processedAt(f.hub, 'v1', b.name);
  });
  assert.equal(received('v1', idOf(name)), 1, 'written once');
  assert.equal(logs.filter((l) => l.msg === 'blob refused').length, 0);
  assert.equal(await outboxMessages(f.hub, 'v1'), 0, 'the outbox holds nothing of the bundle after its receipt');
  // what was in flight at the cut (the proxy's and the kernel's socket buffers, a few MB on loopback)
  // crosses again: the source resumes from what the inbox stored. A fixed cost, not a fraction
  assert.ok(bytes < payload + (8 << 20), `${bytes} bytes on the link for ${payload} of payload`);
});

test('fed-transfer - link down before the drop: the bundle waits in the outbox and crosses after the restore', async () => {
  const v1 = f.site('v1');
  f.proxy('v1').cut();
  await waitUntil('the studio to see v1 down', () => services.get('studio')!.status().find((l) => l.peer === 'v1')?.state === LinkState.Down, 20_000);
  const b = await drop(f.hub, 'v1', await project('p4', [1 << 20, 12345]));
  await waitUntil('the studio to offer it', () => logs.some((l) => l.msg === 'bundle offered to peer' && l.bundleId === idOf(b.name)), 20_000);
  assert.deepEqual(await readdir(hotFolderDirs(v1.dir, 'studio').incoming).then((n) => n.filter((x) => x === b.name)), []);
  f.proxy('v1').restore();
  await arrived(v1, 'studio', b.name, 30_000);
  await processedAt(f.hub, 'v1', b.name);
});

test('fed-transfer - the sending link service stopped mid-transfer and started again: completes once', async () => {
  const files = await project('p5', Array.from({ length: 12 }, () => 2 << 20));
  const b = await drop(f.hub, 'v1', files);
  const want = await sha(b.path);
  await waitUntil('v1 to have part of it', () => {
    const s = services.get('v1')!.status().find((l) => l.peer === 'studio');
    return s !== undefined && s.incoming.bundles === 1 && s.incoming.bytes < (24 << 20) * 0.8;
  }, 60_000, 5);
  await services.get('studio')!.stop();
  await startLinks(f.hub);
  const p = await arrived(f.site('v1'), 'studio', b.name, 60_000);
  assert.equal(await sha(p), want);
  await processedAt(f.hub, 'v1', b.name);
  assert.equal(received('v1', idOf(b.name)), 1);
});

test('fed-transfer - the receiving link service stopped mid-transfer and started again: completes once', async () => {
  const files = await project('p6', Array.from({ length: 12 }, () => 2 << 20));
  const b = await drop(f.hub, 'v1', files);
  const want = await sha(b.path);
  await waitUntil('v1 to have part of it', () => {
    const s = services.get('v1')!.status().find((l) => l.peer === 'studio');
    return s !== undefined && s.incoming.bundles === 1 && s.incoming.bytes < (24 << 20) * 0.7;
  }, 60_000, 5);
  await services.get('v1')!.stop();
  await startLinks(f.site('v1'));
  const p = await arrived(f.site('v1'), 'studio', b.name, 90_000);
  assert.equal(await sha(p), want);
  await processedAt(f.hub, 'v1', b.name, 90_000);
  assert.equal(received('v1', idOf(b.name)), 1);
});

test('fed-transfer - v1\'s bundle does not go to v2; a bundle addressed to v2 dropped for v1 is refused', async () => {
  const b = await drop(f.hub, 'v1', await project('p7', [100_000]));
  await arrived(f.site('v1'), 'studio', b.name);
  await processedAt(f.hub, 'v1', b.name);
  const v2In = hotFolderDirs(f.site('v2').dir, 'studio').incoming;
  assert.deepEqual((await readdir(v2In)).filter((n) => n.endsWith('.rbb')), []);
  assert.ok(!logs.some((l) => (l as { site?: string }).site === 'v2' && l.bundleId === idOf(b.name)), 'v2 never heard of it');
  // a bundle for v2 in v1's outgoing folder: refused before anything crosses
  const wrong = await drop(f.hub, 'v2', await project('p8', [1000]), 'v1');
  await waitUntil('the misplaced bundle to go to failed/', () => readdir(hotFolderDirs(f.hub.dir, 'v1').failed).then((n) => n.includes(wrong.name)).catch(() => false), 20_000);
  const reason = await readFile(join(hotFolderDirs(f.hub.dir, 'v1').failed, `${wrong.name}.reason.txt`), 'utf8');
  assert.match(reason, /RB_BAD_BUNDLE.*to 'v2'/s);
});

test('fed-transfer - link.status answers with each peer\'s state, backlog and round trip, and down while cut', async () => {
  const op = await f.hub.connectAs(Role.Operator);
  conns.push(op);
  const ask = async (peer?: string) => {
    const r = linkCodecs.statusReply.decode((await op.request(subjects.linkStatus('studio'), linkCodecs.statusRequest.encode({ v: PROTOCOL_MAJOR, ...(peer ? { peer } : {}) }), { timeout: 5_000 })).data);
    assert.ok(r.ok);
    return r.body;
  };
  await waitUntil('a round trip to each vendor', async () => (await ask()).links.every((l) => l.rttMs !== undefined && l.state === LinkState.Up), 20_000);
  const body = await ask();
  assert.equal(body.site, 'studio');
  assert.deepEqual(body.links.map((l) => l.peer).sort(), ['v1', 'v2']);
  for (const l of body.links) assert.deepEqual(l.outgoing, { bundles: 0, bytes: 0 });
  assert.deepEqual((await ask('v2')).links.map((l) => l.peer), ['v2']);
  const bad = linkCodecs.statusReply.decode((await op.request(subjects.linkStatus('studio'), linkCodecs.statusRequest.encode({ v: PROTOCOL_MAJOR, peer: 'v9' }), { timeout: 5_000 })).data);
  assert.ok(!bad.ok && bad.error.code === 'RB_BAD_PEER');
  f.proxy('v1').cut();
  try {
    await waitUntil('v1 reported down', async () => (await ask('v1')).links[0]?.state === LinkState.Down, 20_000);
    const b = await drop(f.hub, 'v1', await project('p9', [500_000]));
    await waitUntil('the waiting bundle in the backlog', async () => (await ask('v1')).links[0]?.outgoing.bundles === 1, 20_000);
    assert.equal((await ask('v2')).links[0]?.state, LinkState.Up, 'v2 is not affected');
    f.proxy('v1').restore();
    await processedAt(f.hub, 'v1', b.name, 30_000);
  } finally {
    f.proxy('v1').restore();
  }
});

after(() => {
  // RB_DUMP_LOGS=<file>: the links' logs, to see what happened in a failed run
  if (process.env.RB_DUMP_LOGS) writeFileSync(process.env.RB_DUMP_LOGS, logs.map((l) => JSON.stringify(l)).join('\n') + '\n');
});

test('fed-transfer - a bundle dropped by hand, unsigned, leaves the studio signed and v1\'s intake rule accepts it; a copy carried by hand is accepted too', async () => {
  const { copyFile, rename } = await import('node:fs/promises');
  const { routeBundle } = await import('../../sites/intake/index.ts');
  const { readBundle } = await import('../../sites/bundles/index.ts');
  const { createReadStream } = await import('node:fs');
  const v1 = f.site('v1');
  // the key v1 learned from the studio's hello (a vendor has it from the invitation already)
  await waitUntil('v1 to see the studio\'s key', () => peerKeys.some((k) => k.site === 'v1' && k.peer === 'studio'), 20_000);
  const studioKey = peerKeys.find((k) => k.site === 'v1' && k.peer === 'studio')!.key;
  const taken: { bundleId: string; signed: boolean }[] = [];
  const intake = {
    site: 'v1', dataDir: v1.dir, peerKey: () => studioKey,
    handlers: { peerJob: async () => assert.fail('not a job'), ownJob: async () => assert.fail('not news of v1\'s job') },
  };
  // a status bundle about one of the studio's jobs, written by an operator's tool without a key
  const write = async (sign: boolean) => {
    const bundleId = newBundleId();
    const staged = join(src, `${bundleId}.rbb`);
    await writeBundle({
      head: { kind: 'status', bundleId, from: 'studio', to: 'v1', route: [], jobRef: { site: 'studio', job: 'j-hand' }, status: { state: 'cancel', at: Date.now() } },
      files: await project(`hand-${bundleId}`, [10_000]), out: staged, dataDir: f.hub.dir, ...(sign ? { sign: await loadSiteKey(f.hub.dir) } : {}),
    });
    return { bundleId, staged, name: `${bundleId}.rbb` };
  };
  const accept = (file: string) => routeBundle({ ...intake, handlers: { ...intake.handlers, peerJob: async (b) => void taken.push({ bundleId: b.manifest.bundleId, signed: b.signed }) } }, 'studio', file);

  const hand = await write(false);
  await assert.rejects(accept(hand.staged), /RB_BUNDLE_UNSIGNED|carries no signature/, 'unsigned as written');
  await rename(hand.staged, join(hotFolderDirs(f.hub.dir, 'v1').outgoing, hand.name));
  const got = await arrived(v1, 'studio', hand.name);
  await accept(got);
  assert.deepEqual(taken, [{ bundleId: hand.bundleId, signed: true }]);
  // the studio keeps the signed bundle it sent: the file in processed/ is the one v1 received
  await processedAt(f.hub, 'v1', hand.name);
  assert.equal(await sha(join(hotFolderDirs(f.hub.dir, 'v1').processed, hand.name)), await sha(got));
  const sent = await readBundle({ source: createReadStream(got), tempDir: src, dataDir: v1.dir });
  await rm(sent.dir, { recursive: true, force: true });
  assert.ok(sent.signature);

  // carried by hand, no link: a bundle the studio's packer wrote (signed) copied into v1's incoming/
  const carried = await write(true);
  const there = join(hotFolderDirs(v1.dir, 'studio').incoming, `carried-${carried.name}`);
  await copyFile(carried.staged, there);
  await accept(there);
  assert.deepEqual(taken.at(-1), { bundleId: carried.bundleId, signed: true });
  await rm(there);
});
