import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { PeerCas } from '../../sites/cas/index.ts';

/*
 * What the per-peer content store costs (issue 14): N MB of random files of mixed sizes (one
 * 64 MiB file down to 16 KiB ones), each put from its file into a fresh store (stream, sha256
 * and size checked, fsync, rename), then the want-list of all of them, a second put (no-op),
 * linkOut of all into a job tree, and gc. Run from tools/bench/main.ts (`npm run bench -- --only cas`).
 */
export interface CasOptions {
  /** Total size in MiB (256). */
  mb: number;
  /** Where the source files and the store go (default: the OS temp dir). */
  dir?: string;
}

const KiB = 1024;
const MiB = 1024 * KiB;
// [size, share of the total]: a quarter of the bytes in one big file, the rest spread down to 16 KiB files
const MIX: [number, number][] = [[64 * MiB, 0.25], [16 * MiB, 0.25], [4 * MiB, 0.125], [1 * MiB, 0.125], [256 * KiB, 0.125], [64 * KiB, 0.0625], [16 * KiB, 0.0625]];

const sizeName = (n: number) => (n >= MiB ? `${n / MiB} MiB` : `${n / KiB} KiB`);

export async function casBench(o: CasOptions, machine: string): Promise<string> {
  const base = o.dir ?? tmpdir();
  const root = await mkdtemp(join(base, 'rb-bench-cas-'));
  let fsType = 'unknown';
  try {
    fsType = execFileSync('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', '-T', base], { encoding: 'utf8' }).trim().replace(/\s+/g, ' ');
  } catch {
    fsType = `statfs type ${(await statfs(base)).type}`;
  }
  try {
    const src = join(root, 'src');
    await mkdir(src);
    const files: { path: string; size: number; sha256: string }[] = [];
    const scale = (o.mb * MiB) / (256 * MiB);
    for (const [size, share] of MIX) {
      const count = Math.max(1, Math.round((share * 256 * MiB * scale) / size));
      for (let i = 0; i < count; i++) {
        const bytes = randomBytes(size);
        const path = join(src, `${sizeName(size).replace(' ', '')}-${i}.bin`);
        await writeFile(path, bytes);
        files.push({ path, size, sha256: createHash('sha256').update(bytes).digest('hex') });
      }
    }
    const total = files.reduce((a, f) => a + f.size, 0);
    const mbps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);

    // hashing alone, from the (cached) files: the floor under put
    let t = performance.now();
    for (const f of files) await pipeline(createReadStream(f.path), createHash('sha256'));
    const hashMs = performance.now() - t;

    const cas = await PeerCas.open(join(root, 'data'), 'bench');
    const bySize = new Map<number, { bytes: number; ms: number; n: number }>();
    t = performance.now();
    for (const f of files) {
      const t0 = performance.now();
      await cas.put(f.path, f.sha256, f.size);
      const row = bySize.get(f.size) ?? { bytes: 0, ms: 0, n: 0 };
      row.bytes += f.size;
      row.ms += performance.now() - t0;
      row.n++;
      bySize.set(f.size, row);
    }
    const putMs = performance.now() - t;

    // the same puts into a second store, the folder fsyncs deferred to one flush at the end
    const deferred = await PeerCas.open(join(root, 'data2'), 'bench');
    t = performance.now();
    for (const f of files) await deferred.put(f.path, f.sha256, f.size, { deferDirSync: true });
    await deferred.flush();
    const deferMs = performance.now() - t;

    t = performance.now();
    const missing = await cas.has(files.map((f) => f.sha256));
    const hasMs = performance.now() - t;
    if (missing.length > 0) throw new Error(`cas bench: ${missing.length} blobs missing after put`);
    t = performance.now();
    for (const f of files) await cas.put(f.path, f.sha256, f.size);
    const againMs = performance.now() - t;
    t = performance.now();
    for (const [i, f] of files.entries()) await cas.linkOut(f.sha256, join(root, 'data', 'fed', 'jobs', 'j1', 'root', 'proj', `f${i}`));
    const linkMs = performance.now() - t;
    t = performance.now();
    const gc = await cas.gc(0, { now: Date.now() + 1000 });
    const gcMs = performance.now() - t;

    const rows = [...bySize.entries()].map(([size, r]) => `| ${sizeName(size)} | ${r.n} | ${(r.bytes / MiB).toFixed(0)} | ${(r.ms / r.n).toFixed(2)} | ${mbps(r.bytes, r.ms).toFixed(0)} |`);
    console.log(`cas: put ${mbps(total, putMs).toFixed(0)} MiB/s, deferred ${mbps(total, deferMs).toFixed(0)} MiB/s (hash alone ${mbps(total, hashMs).toFixed(0)} MiB/s)`);
    return [
      `## Content store put (issue 14): ${machine}`,
      '',
      `${files.length} random files, ${(total / MiB).toFixed(0)} MiB in all, each put from its file into a fresh per-peer store`,
      `(sites/cas: stream, sha256 and size checked, fsync, rename into sha256/ab/<hex>) on ${base} (${fsType}); tools/bench/cas-put.ts.`,
      'The source files were just written, so they are read from the page cache: the figure is hashing plus writing, not reading.',
      '',
      '| file size | files | MiB | ms a put | MiB/s |',
      '|---|---|---|---|---|',
      ...rows,
      `| **all** | ${files.length} | ${(total / MiB).toFixed(0)} | ${(putMs / files.length).toFixed(2)} | **${mbps(total, putMs).toFixed(0)}** |`,
      '',
      `- the same puts with \`deferDirSync\` and one \`flush()\` at the end (folder fsyncs batched): ${mbps(total, deferMs).toFixed(0)} MiB/s (${(deferMs / 1000).toFixed(2)} s, against ${(putMs / 1000).toFixed(2)} s).`,
      `- sha256 alone over the same files: ${mbps(total, hashMs).toFixed(0)} MiB/s (${(hashMs / 1000).toFixed(2)} s).`,
      `- want-list (\`has\`) of all ${files.length} hashes, all present: ${hasMs.toFixed(0)} ms; a second put of everything (no-op): ${againMs.toFixed(0)} ms.`,
      `- \`linkOut\` of all ${files.length} into a job tree (hardlinks): ${linkMs.toFixed(0)} ms; \`gc\` of all of them: ${gcMs.toFixed(0)} ms (${gc.removed} removed).`,
      '',
    ].join('\n');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
