import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { Role } from '../../protocol/index.ts';
import { newBundleId, writeBundle } from '../../sites/bundles/index.ts';
import { hotFolderDirs } from '../../sites/hotfolders/index.ts';
import { loadSiteKey, startSiteLinks, type SiteLinksHandle } from '../../sites/links/index.ts';
import { startFedSites, waitLinkUp, type FedSite } from '../../test/helpers/fed-sites.ts';
import { waitUntil } from '../lib/wait-until.ts';

export interface TransferBenchOptions {
  /** MB of assets (10^6 bytes). */
  mb: number;
  /** Where the assets and rsync's copy go (not /tmp: bundle paths may not lie there). */
  dir: string;
  /** Seconds the link is cut in the cut round. */
  cutS: number;
}

/** Mixed sizes: a few large files carry most bytes, many small ones most of the count. */
function sizes(totalMb: number): number[] {
  const pattern = [32 << 20, 8 << 20, 8 << 20, ...Array<number>(4).fill(2 << 20), ...Array<number>(8).fill(512 << 10), ...Array<number>(16).fill(64 << 10)];
  const out: number[] = [];
  let left = totalMb * 1e6;
  for (let i = 0; left > 0; i++) {
    const s = Math.min(pattern[i % pattern.length]!, left);
    out.push(s);
    left -= s;
  }
  return out;
}

async function makeAssets(dir: string, list: number[]): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (const [i, size] of list.entries()) {
    const p = join(dir, `asset-${i}.bin`);
    await writeFile(p, randomBytes(size));
    files.push(p);
  }
  return files;
}

/**
 * `npm run bench -- --only transfer`: assets of mixed sizes sent studio → v1 by the site link over a
 * real leaf on loopback (three nats-servers of test/helpers/fed-sites.ts, the leaf through the
 * counting proxy), against `rsync -a` between two folders on the same disk: new bytes, the same
 * assets again, and new assets with the link cut for a few seconds at ~30 %.
 */
export async function transferBench(o: TransferBenchOptions, machine: string): Promise<string> {
  const dir = await mkdtemp(join(o.dir, 'rb-bench-transfer-'));
  const f = await startFedSites({ vendors: ['v1'] });
  const services: SiteLinksHandle[] = [];
  const conns: { close(): Promise<void> }[] = [];
  const times = new Map<string, number>(); // `${msg} ${bundleId}` → ms
  const log = pino({ level: 'info' }, { write: (line: string) => {
    const l = JSON.parse(line) as { msg: string; bundleId?: string };
    if (l.bundleId) times.set(`${l.msg} ${l.bundleId}`, performance.now());
  } });
  try {
    const list = sizes(o.mb);
    const payload = list.reduce((a, b) => a + b, 0);
    const mb = (b: number) => (b / 1e6).toFixed(1);
    const rate = (bytes: number, ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(1);
    const assets = await makeAssets(join(dir, 'assets'), list);

    // the baseline, on the same disk and in the same run
    let t = performance.now();
    const rs = spawnSync('rsync', ['-a', `${join(dir, 'assets')}/`, `${join(dir, 'rsync-copy')}/`], { stdio: 'inherit' });
    if (rs.error || rs.status !== 0) throw new Error(`rsync failed (${rs.error?.message ?? `exit ${rs.status}`}): is it installed? (tools/bootstrap.sh --with-test)`);
    const rsyncMs = performance.now() - t;
    t = performance.now();
    spawnSync('rsync', ['-a', `${join(dir, 'assets')}/`, `${join(dir, 'rsync-copy')}/`], { stdio: 'inherit' });
    const rsyncAgainMs = performance.now() - t;

    await waitLinkUp(f.hub, f.site('v1'));
    for (const s of [f.hub, f.site('v1')]) {
      const farm = await s.connectAs(Role.SiteLink);
      const peer = s.links.peers[0]!.name;
      const dmz = await s.connectDmz(peer);
      conns.push(farm, dmz);
      services.push(await startSiteLinks({ site: s.name, dataDir: s.dir, farm, peers: [{ name: peer, dmz }], log, scanEveryMs: 100 }));
    }
    await waitUntil('the links to be up', () => services.every((s) => s.status()[0]?.state === 'up'), 20_000);
    const proxy = f.proxy('v1');

    /** One bundle: written aside, renamed into outgoing/v1 (the clock starts), done at its receipt. */
    const send = async (files: string[], during?: (b0: number) => Promise<void>) => {
      const bundleId = newBundleId();
      const name = `${bundleId}.rbb`;
      const staged = join(dir, name);
      await writeBundle({ head: { kind: 'status', bundleId, from: 'studio', to: 'v1', route: [] }, files, out: staged, dataDir: f.hub.dir, sign: await loadSiteKey(f.hub.dir) }); // signed, as the packer writes (an unsigned one is rewritten by the link)
      const b0 = proxy.bytes;
      const t0 = performance.now();
      await rename(staged, join(hotFolderDirs(f.hub.dir, 'v1').outgoing, name));
      const cut = during?.(b0);
      // the leaf alone: from the first MB across to the payload across, sampled every 20 ms
      let firstMbAt = 0;
      let allAt = 0;
      const sampler = setInterval(() => {
        const n = proxy.bytes - b0;
        if (!firstMbAt && n >= 1e6) firstMbAt = performance.now();
        if (!allAt && n >= payload) allAt = performance.now();
      }, 20);
      const trace = process.env.RB_BENCH_TRACE ? setInterval(() => console.error(`+${(performance.now() - t0).toFixed(0)} studio put ${mb(services[0]!.status()[0]!.bytesOut)} MB, link ${mb(proxy.bytes - b0)} MB, v1 took ${mb(services[1]!.status()[0]!.bytesIn)} MB`), 500) : undefined;
      await waitUntil(`${name} receipted`, () => readdir(hotFolderDirs(f.hub.dir, 'v1').processed).then((n) => n.includes(name)), 600_000, 20);
      await cut;
      clearInterval(trace);
      clearInterval(sampler);
      const t1 = performance.now();
      const inc = await readdir(hotFolderDirs(f.site('v1').dir, 'studio').incoming);
      if (!inc.includes(name)) throw new Error(`${name} receipted but not in v1's incoming folder`);
      const offered = times.get(`bundle offered to peer ${bundleId}`) ?? t0;
      if (process.env.RB_BENCH_TRACE) console.error([...times].filter(([k]) => k.endsWith(bundleId)).map(([k, v]) => `${k.replace(bundleId, '')} +${(v - t0).toFixed(0)} ms`).join('\n'));
      const leafMs = firstMbAt && allAt ? allAt - firstMbAt : 0;
      return { ms: t1 - t0, prepareMs: offered - t0, pipeMs: t1 - offered, linkBytes: proxy.bytes - b0, leafMs, tailMs: allAt ? t1 - allAt : 0 };
    };

    const cold = await send(assets);
    const again = await send(assets);
    const fresh = await makeAssets(join(dir, 'assets2'), list);
    let resumeMs = 0;
    let restoredAt = 0;
    let cutAtBytes = 0;
    const cutRound = await send(fresh, async (b0) => {
      await waitUntil('~30 % across the link', () => proxy.bytes - b0 >= payload * 0.3, 600_000, 1);
      cutAtBytes = proxy.bytes - b0;
      proxy.cut();
      await new Promise((r) => setTimeout(r, o.cutS * 1000));
      const before = proxy.bytes;
      proxy.restore();
      restoredAt = performance.now();
      // resumed: the bulk flows again (1 MB past what hellos and the reconnect carry)
      await waitUntil('the transfer to resume', () => proxy.bytes - before > 1e6, 600_000, 5);
      resumeMs = performance.now() - restoredAt;
    });
    const cutExtra = cutRound.linkBytes - cold.linkBytes;

    return [
      `## Site link transfer (issue 14): ${machine}`,
      '',
      `${list.length} assets of mixed sizes (64 KiB to 32 MiB), ${mb(payload)} MB, sent studio → v1 by the site link (sites/links) over a`,
      `leaf between two real nats-servers on loopback, through the counting TCP proxy of test/helpers; the clock runs from the bundle's`,
      `rename into outgoing/v1/ to its receipt (the tar in v1's incoming/studio/, written as the blobs arrive); files above 4 MiB`,
      `travel in content-defined chunks (~1 MiB); tools/bench/transfer.ts.`,
      '',
      '| round | MB on the link | time s | MB/s of payload | of which: the sender checks the tar s | pipe, receiver, receipt s |',
      '|---|---|---|---|---|---|',
      `| new assets (cold) | ${mb(cold.linkBytes)} | ${(cold.ms / 1000).toFixed(2)} | **${rate(payload, cold.ms)}** | ${(cold.prepareMs / 1000).toFixed(2)} | ${(cold.pipeMs / 1000).toFixed(2)} (${rate(payload, cold.pipeMs)} MB/s) |`,
      `| the same assets again | ${mb(again.linkBytes)} (**${((again.linkBytes / payload) * 100).toFixed(2)} %**) | ${(again.ms / 1000).toFixed(2)} | – | ${(again.prepareMs / 1000).toFixed(2)} | ${(again.pipeMs / 1000).toFixed(2)} |`,
      `| new assets, link cut ${o.cutS} s at ${((cutAtBytes / payload) * 100).toFixed(0)} % | ${mb(cutRound.linkBytes)} | ${(cutRound.ms / 1000).toFixed(2)} | ${rate(payload, cutRound.ms)} | ${(cutRound.prepareMs / 1000).toFixed(2)} | ${(cutRound.pipeMs / 1000).toFixed(2)} |`,
      '',
      `- the leaf alone in the cold round (from its first MB to the whole payload across the proxy): ${(cold.leafMs / 1000).toFixed(2)} s = ${rate(payload - 1e6, cold.leafMs)} MB/s;`,
      `  from the payload's last byte across to the receipt: ${(cold.tailMs / 1000).toFixed(2)} s.`,
      `- rsync -a of the same assets between two folders on the same disk: ${(rsyncMs / 1000).toFixed(2)} s = **${rate(payload, rsyncMs)} MB/s**`,
      `  (again, unchanged: ${(rsyncAgainMs / 1000).toFixed(2)} s); the link did ${(Number(rate(payload, cold.ms)) / Number(rate(payload, rsyncMs))).toFixed(2)}× rsync's rate.`,
      `- the cut: ${mb(cutExtra)} MB more on the link than the cold round (**${((cutExtra / payload) * 100).toFixed(1)} %** of the payload);`,
      `  the bulk flowed again **${(resumeMs / 1000).toFixed(1)} s** after the link returned.`,
      `- load average at the end: ${loadavg()[0]!.toFixed(1)} (the 2 cores are shared with other engineers' tests).`,
      '',
    ].join('\n');
  } finally {
    for (const s of services) await s.stop().catch(() => {});
    for (const c of conns) await c.close().catch(() => {});
    await f.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
