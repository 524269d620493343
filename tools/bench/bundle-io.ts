import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { newBundleId, readBundle, writeBundle } from '../../sites/bundles/index.ts';

/*
 * Bundle writer and reader throughput (issue 14): a job bundle of mixed file sizes written from
 * real files (hash + tar) and read back (tar + hash + temp files), on one disk.
 * Run from tools/bench/main.ts (`npm run bench -- --only bundles`). The notes' target: reader ≥ 150 MB/s.
 */
export interface BundleBenchOptions {
  /** Bundle size in MB (256). */
  mb: number;
  /** Where the files and the bundle go: not under /tmp, which the path rules refuse (/var/tmp). */
  dir: string;
  runs: number;
}

/** Mixed sizes: a quarter each in 32 MiB, 4 MiB, 256 KiB and 16 KiB files; or all in 32 MiB files. */
function sizes(totalMb: number, mixed: boolean): number[] {
  const out: number[] = [];
  const shares = mixed ? [32 << 20, 4 << 20, 256 << 10, 16 << 10] : [32 << 20];
  const share = (totalMb * 1024 * 1024) / shares.length;
  for (const s of shares) for (let n = 0; n < Math.max(1, Math.round(share / s)); n++) out.push(s);
  return out;
}

export async function bundleBench(o: BundleBenchOptions, machine: string): Promise<string> {
  const dir = await mkdtemp(join(o.dir, 'rb-bench-bundle-'));
  try {
    const rows: string[] = [];
    let mixedFiles = 0;
    for (const mixed of [true, false]) {
      const src = join(dir, mixed ? 'mixed' : 'large');
      await mkdir(src);
      const files: string[] = [];
      for (const [i, size] of sizes(o.mb, mixed).entries()) {
        const path = join(src, `f${i}.bin`);
        await writeFile(path, randomBytes(size));
        files.push(path);
      }
      if (mixed) mixedFiles = files.length;
      for (let run = 1; run <= o.runs; run++) {
        const out = join(dir, `job-${run}.rbb`);
        let t = performance.now();
        await writeBundle({ head: { kind: 'job', bundleId: newBundleId(), from: 'studio', to: 'vendor', route: [], job: { scene: files[0]!, frames: '1', output: { dir: join(dir, 'out') } } }, files, out, dataDir: '/var/lib/renderbus' });
        const writeS = (performance.now() - t) / 1000;
        const bytes = (await stat(out)).size;
        const temp = join(dir, `temp-${run}`);
        await mkdir(temp);
        // the floor under the same load: reading the bundle file and hashing it, nothing else
        t = performance.now();
        const h = createHash('sha256');
        for await (const c of createReadStream(out, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
        h.digest();
        const hashS = (performance.now() - t) / 1000;
        t = performance.now();
        const r = await readBundle({ source: createReadStream(out, { highWaterMark: 1 << 20 }), tempDir: temp, dataDir: '/var/lib/renderbus' });
        const readS = (performance.now() - t) / 1000;
        await rm(temp, { recursive: true });
        await rm(out);
        const mbs = (s: number) => (bytes / 1e6 / s).toFixed(0);
        rows.push(`| ${mixed ? 'mixed' : '32 MiB files'} | ${run} | ${(bytes / 1e6).toFixed(0)} | ${files.length} | ${r.blobs.size} | ${writeS.toFixed(2)} | ${mbs(writeS)} | ${readS.toFixed(2)} | ${mbs(readS)} | ${mbs(hashS)} | ${loadavg()[0]!.toFixed(1)} |`);
        console.log(`bundles: ${mixed ? 'mixed' : 'large'} run ${run}: write ${mbs(writeS)} MB/s, read ${mbs(readS)} MB/s, read+sha256 alone ${mbs(hashS)} MB/s`);
      }
      await rm(src, { recursive: true });
    }
    return [
      `## Bundle writer and reader (issue 14): ${machine}`,
      '',
      `A job bundle of ${o.mb} MiB of random content under ${o.dir} (tools/bench/bundle-io.ts): "mixed" is ${mixedFiles} files, a quarter`,
      'of the bytes each in 32 MiB, 4 MiB, 256 KiB and 16 KiB files; "32 MiB files" the same bytes in large files only, which',
      'separates the cost per byte from the cost per file. Write: stat + sha256 of every file, then the tar',
      '(manifest + one blob per content, each hashed again as it streams) to `.rbb.part`, renamed. Read: tar-stream from',
      'the file, manifest checks, each blob hashed while it streams into the reader\'s directory (up to 1 MiB verified in memory first).',
      '"sha256 only" reads the bundle file and hashes it, nothing else: the floor under the same load (other engineers\'',
      'tests share the 2 cores; "load" is the 1-minute load average after the run). Target (notes §6): read ≥ 150 MB/s.',
      '',
      '| bundle | run | MB | files | blobs | write s | write MB/s | read s | read MB/s | sha256 only MB/s | load |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
    ].join('\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
