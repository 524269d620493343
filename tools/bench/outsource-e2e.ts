import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { freePort, waitUntil } from '../../test/helpers/farm.ts';
import { rbIn, startUp, stopUp, type UpProcess } from '../../test/helpers/site-process.ts';

/*
 * `npm run bench -- --only outsource`: the end-to-end time of a small POV-Ray job (an #include, a
 * 190 KB image_map texture, 4 frames of 96×72) rendered at home against the same job outsourced to a
 * linked vendor: two `renderbus up --site` processes on this machine (one render slot each), linked
 * by `site invite` / `site join` over a leaf on loopback. Timed: `renderbus submit --wait`, spawn to
 * exit (submit, schedule, render, frames in the output folder, the job done). The first outsourced
 * run is cold (the scene and texture cross); the later ones find them in the vendor's store.
 */
export interface OutsourceBenchOptions {
  runs: number;
  /** Where the sites and the project go (not /tmp: a job's paths may not lie there). */
  dir: string;
}

const SCENE = `#include "parts.inc"
camera { location <0, 1, -4> look_at <0, 0.5, 0> }
light_source { <4, 6, -6> color rgb 1 }
plane { y, 0 pigment { image_map { png "checker.png" } rotate x * 90 scale 2 } }
sphere { <-1.5 + clock * 0.3, 0.5, 0>, 0.5 texture { Ball } }
`;

export async function outsourceBench(o: OutsourceBenchOptions, machine: string): Promise<string> {
  const dir = await mkdtemp(join(o.dir, 'rb-bench-outsource-'));
  const ups: UpProcess[] = [];
  const loadBefore = loadavg()[0]!;
  try {
    const studioData = join(dir, 'studio');
    const v1Data = join(dir, 'v1');
    const leaf = `127.0.0.1:${await freePort()}`;
    ups.push(await startUp(dir, studioData, ['--site', 'studio', '--leaf-listen', leaf, '--advertise', leaf], { slots: 1 }));
    ups.push(await startUp(dir, v1Data, ['--site', 'v1'], { slots: 1 }));
    const joined = rbIn(dir, '--data', v1Data, 'site', 'join', rbIn(dir, '--data', studioData, 'site', 'invite', 'v1').stdout.trim());
    if (joined.code !== 0) throw new Error(`site join failed: ${joined.stderr}`);
    const linkUp = () => (JSON.parse(rbIn(dir, '--data', studioData, 'sites', '--json').stdout) as { peers: { name: string; state: string }[] }).peers.some((p) => p.name === 'v1' && p.state === 'up');
    await waitUntil('the link up', linkUp, 60_000, 500);

    const proj = join(dir, 'proj');
    await mkdir(proj, { recursive: true });
    await writeFile(join(proj, 'shot.pov'), SCENE);
    await writeFile(join(proj, 'parts.inc'), '#declare Ball = texture { pigment { color rgb <1, 0.3, 0.2> } finish { phong 0.5 } };\n');
    await sharp(randomBytes(256 * 256 * 3), { raw: { width: 256, height: 256, channels: 3 } }).png().toFile(join(proj, 'checker.png'));
    let n = 0;
    const timed = async (site?: string): Promise<number> => {
      n += 1;
      const file = join(dir, `job-${n}.json`);
      await writeFile(file, JSON.stringify({
        name: `bench-${n}`, scene: join(proj, 'shot.pov'), frames: '1-4', resolution: '96x72',
        supportFiles: [join(proj, 'parts.inc'), join(proj, 'checker.png')],
        output: { dir: join(proj, `out-${n}`), pattern: 'shot_####.png' }, ...(site ? { site } : {}),
      }));
      const t0 = performance.now();
      const r = rbIn(dir, '--data', studioData, 'submit', file, '--wait');
      const s = (performance.now() - t0) / 1000;
      if (r.code !== 0) throw new Error(`submit --wait ${site ?? 'at home'} exited ${r.code}: ${r.stderr}`);
      return s;
    };
    const home: number[] = [];
    const away: number[] = [];
    await timed(); // warms the studio's render server (POV-Ray's first start, the scheduler's adoption window)
    const cold = await timed('v1');
    for (let i = 0; i < o.runs; i++) {
      home.push(await timed());
      away.push(await timed('v1'));
    }
    const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;
    const f = (v: number) => v.toFixed(2);
    return [
      `## Outsourcing end to end (${machine})`,
      '',
      `\`npm run bench -- --only outsource\`: a POV-Ray job of 4 frames (96×72, an #include and a 190 KB image_map texture), \`renderbus submit --wait\` timed from spawn to exit, at home and outsourced to a linked vendor (two \`renderbus up --site\` on this machine, one render slot each, the leaf on loopback). The first outsourced run is cold (scene and texture cross); ${o.runs} warm runs each after it, taking turns. Load average (1 min) ${loadBefore.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end. Times in s.`,
      '',
      '| job | median | best | worst |',
      '|---|---|---|---|',
      `| at home | ${f(median(home))} | ${f(Math.min(...home))} | ${f(Math.max(...home))} |`,
      `| outsourced to v1, warm | ${f(median(away))} | ${f(Math.min(...away))} | ${f(Math.max(...away))} |`,
      `| outsourced to v1, cold (first) | ${f(cold)} | | |`,
      '',
      `Outsourcing adds ${f(median(away) - median(home))} s to a small job here (median): the bundle's packing and hashing, the manifest → want → blobs → receipt exchange, the vendor's intake and its scheduler's adoption, and the frames' and result's way back.`,
      '',
    ].join('\n');
  } finally {
    for (const u of ups.reverse()) await stopUp(u);
    await rm(dir, { recursive: true, force: true });
  }
}
