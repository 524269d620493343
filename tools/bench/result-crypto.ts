import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { openSealed, sealFile } from '../../sites/bundles/index.ts';
import { loadResultKey } from '../../sites/links/index.ts';

/*
 * What encrypted results cost (issue 16, docs/federation.md "Encrypted results"): a frame-sized
 * file of random bytes sealed to a result key (sites/bundles/result-crypto.ts: age, streamed)
 * and opened again with the plaintext checked, against sha256 alone over the same file; with
 * the process's peak RSS, since a file must stream, not be held whole. Run from
 * tools/bench/main.ts (`npm run bench -- --only crypto`).
 */
export interface CryptoOptions {
  /** Size of the file in MiB (64). */
  mb: number;
  runs: number;
  dir?: string;
}

const MiB = 1024 * 1024;

export async function cryptoBench(o: CryptoOptions, machine: string): Promise<string> {
  const root = await mkdtemp(join(o.dir ?? tmpdir(), 'rb-bench-crypto-'));
  try {
    const key = await loadResultKey(join(root, 'data'));
    const src = join(root, 'frame.bin');
    const bytes = randomBytes(o.mb * MiB);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await writeFile(src, bytes);
    const rssBefore = process.memoryUsage().rss;
    const times = { hash: [] as number[], seal: [] as number[], open: [] as number[] };
    for (let i = 0; i < o.runs; i++) {
      let t = performance.now();
      await pipeline(createReadStream(src), createHash('sha256'));
      times.hash.push(performance.now() - t);
      t = performance.now();
      await sealFile(src, join(root, `sealed-${i}`), key.recipient);
      times.seal.push(performance.now() - t);
      t = performance.now();
      await openSealed(join(root, `sealed-${i}`), join(root, `back-${i}`), key.identity, { sha256, size: bytes.length }, 'bench');
      times.open.push(performance.now() - t);
      await rm(join(root, `sealed-${i}`));
      await rm(join(root, `back-${i}`));
    }
    const peak = process.resourceUsage().maxRSS * 1024;
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const mbps = (ms: number) => (o.mb / (ms / 1000)).toFixed(0);
    console.log(`crypto: seal ${mbps(median(times.seal))} MiB/s, open ${mbps(median(times.open))} MiB/s, sha256 ${mbps(median(times.hash))} MiB/s`);
    return [
      `## Encrypted results (issue 16): ${machine}`,
      '',
      `A ${o.mb} MiB file of random bytes (a large frame) sealed to a result key and opened again, the`,
      `plaintext's sha256 checked (sites/bundles/result-crypto.ts: age v1 through age-encryption 0.3.1,`,
      `streamed in 64 KiB chunks); median of ${o.runs} runs, from the page cache, on ${o.dir ?? tmpdir()}; tools/bench/result-crypto.ts.`,
      '',
      '| step | ms | MiB/s |',
      '|---|---|---|',
      `| sha256 alone (the floor) | ${median(times.hash).toFixed(0)} | ${mbps(median(times.hash))} |`,
      `| seal (read, hash, encrypt, write) | ${median(times.seal).toFixed(0)} | **${mbps(median(times.seal))}** |`,
      `| open (read, decrypt, hash, write) | ${median(times.open).toFixed(0)} | **${mbps(median(times.open))}** |`,
      '',
      `- peak RSS of the bench process ${(peak / MiB).toFixed(0)} MiB (${(rssBefore / MiB).toFixed(0)} MiB before the runs, with the ${o.mb} MiB source buffer held): the file streams.`,
      '- ChaCha20-Poly1305 here is pure JavaScript (@noble/ciphers); the X25519 step is WebCrypto\'s, once per file.',
      '',
    ].join('\n');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
