import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { createPovrayAdapter } from '../../actors/render-slot/adapters/povray.ts';
import { detectSandbox } from '../../actors/render-slot/sandbox-host.ts';
import { inputBinds, sandboxArgv, type SandboxPlan } from '../../actors/render-slot/sandbox.ts';
import { PeerCas } from '../../sites/cas/index.ts';
import { treePath } from '../../sites/remote-jobs/path-map.ts';

/*
 * What the I/O wrapper costs (issue 15; docs/security.md "The sandbox"): a task's start, bwrap vs
 * bare (`true`), the start over a peer's job of many input files (its tree of hard links from a
 * PeerCas: one bind per top-level folder, so the start should not grow with the files), and a
 * real POV-Ray frame inside vs outside. Each timing loop runs in a plain `node` (sandbox-loop.ts,
 * bundled here with esbuild): runProcess through the fork server, as a render slot starts a renderer.
 * Run from tools/bench/main.ts (`npm run bench -- --only sandbox`).
 */
export interface SandboxCostOptions {
  /** Starts of `true` each way. */
  runs: number;
  /** Input files of the peer's job. */
  files: number;
  /** POV-Ray frames each way. */
  frames: number;
  /** Where the store, the tree and the work dirs go. */
  dir: string;
}

const ENV = { PATH: '/usr/bin:/bin' };
const pct = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const med = (xs: readonly number[]) => pct([...xs].sort((a, b) => a - b), 50);
const p99 = (xs: readonly number[]) => pct([...xs].sort((a, b) => a - b), 99);
const f1 = (n: number) => n.toFixed(1);

interface Command {
  name: string;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
}

/** sandbox-loop.ts as one plain .mjs: each module's import.meta kept to its own place (launcher.pl is found beside launcher.ts). */
async function bundleLoop(dir: string): Promise<string> {
  const { build } = await import('esbuild');
  const outfile = join(dir, 'sandbox-loop.mjs');
  await build({
    entryPoints: [resolve(import.meta.dirname, 'sandbox-loop.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    logLevel: 'warning',
    // CommonJS dependencies bundled into ESM call require(): give them one
    banner: { js: "import { createRequire as __rbRequire } from 'node:module'; const require = __rbRequire(import.meta.url);" },
    plugins: [{
      name: 'keep-module-places',
      setup(b) {
        b.onLoad({ filter: /\.ts$/ }, async (args) => {
          const source = await readFile(args.path, 'utf8');
          const contents = source.replace(/\bimport\.meta\.(dirname|url)\b/g, (_, which: string) =>
            JSON.stringify(which === 'dirname' ? dirname(args.path) : pathToFileURL(args.path).href));
          return { contents, loader: 'ts' };
        });
      },
    }],
  });
  return outfile;
}

async function timeLoop(loop: string, dir: string, runs: number, commands: Command[]): Promise<Record<string, number[]>> {
  const spec = join(dir, `spec-${Date.now()}.json`);
  await writeFile(spec, JSON.stringify({ runs, commands }));
  const { stdout } = await promisify(execFile)(process.execPath, [loop, spec], { maxBuffer: 64 << 20, env: ENV });
  return JSON.parse(stdout) as Record<string, number[]>;
}

/** A work dir the renderer may write: as root, the sandbox's user owns it (as the slot does, runtime.ts). */
async function workDir(parent: string, name: string, runAs?: { uid: number; gid: number }): Promise<string> {
  const d = join(parent, name);
  await mkdir(d, { recursive: true });
  if (runAs) await chown(d, runAs.uid, runAs.gid);
  return d;
}

/** A peer's job of `n` files under two top-level folders, 100 files a folder, built as the vendor builds it (peer-job.ts). */
async function peerTree(dir: string, n: number): Promise<{ root: string; buildMs: number; tops: string[] }> {
  const cas = await PeerCas.open(join(dir, 'data'), 'studio');
  const src = join(dir, 'src');
  await mkdir(src, { recursive: true });
  const files: { path: string; sha256: string }[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = Buffer.from(`// input ${i}\n#declare V${i} = ${i};\n`);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const from = join(src, String(i));
    await writeFile(from, bytes);
    await cas.put(from, sha256, bytes.length, { deferDirSync: true });
    files.push({ path: `/${i % 2 === 0 ? 'projects' : 'library'}/set${Math.floor(i / 100)}/part${i}.inc`, sha256 });
  }
  await cas.flush();
  await rm(src, { recursive: true });
  const root = join(dir, 'root');
  const t0 = performance.now();
  await mkdir(root, { recursive: true });
  for (const f of files) await cas.linkOut(f.sha256, treePath(root, f.path));
  const buildMs = performance.now() - t0;
  return { root, buildMs, tops: await readdir(root) };
}

export async function sandboxBench(o: SandboxCostOptions, machine: string): Promise<string> {
  const host = await detectSandbox();
  if (!host) throw new Error('sandbox: this host cannot run bubblewrap (bwrap missing, or no user namespaces)');
  await mkdir(o.dir, { recursive: true });
  const dir = await mkdtemp(join(o.dir, 'rb-bench-sandbox-'));
  try {
    const loop = await bundleLoop(dir);
    const runAs = host.runAs;
    const plan = (inputs: SandboxPlan['inputs'], work: string, extra: readonly string[] = []): SandboxPlan =>
      ({ bwrap: host.bwrap, ...(runAs ? { runAs } : {}), inputs, workDir: work, extra });

    // 1. a task's start: `true`, bare and in the sandbox (no inputs)
    const w1 = await workDir(dir, 'w-true', runAs);
    console.log(`sandbox: ${o.runs} starts of true each way`);
    const start = await timeLoop(loop, dir, o.runs, [
      { name: 'bare', argv: ['/usr/bin/true'], cwd: '/', env: ENV },
      { name: 'sandbox', argv: sandboxArgv(plan([], w1), ['/usr/bin/true'], '/', ENV), cwd: '/', env: ENV },
    ]);

    // 2. a peer's job of many files: the tree built from the store, and the start over it
    console.log(`sandbox: a peer's job of ${o.files} files`);
    const tree = await peerTree(dir, o.files);
    const binds = inputBinds({ root: tree.root, tops: tree.tops, files: [] });
    const treeRuns = Math.max(20, Math.floor(o.runs / 2));
    const over = await timeLoop(loop, dir, treeRuns, [
      { name: 'empty', argv: sandboxArgv(plan([], w1), ['/usr/bin/true'], '/', ENV), cwd: '/', env: ENV },
      { name: 'tree', argv: sandboxArgv(plan(binds, w1), ['/usr/bin/true'], '/', ENV), cwd: '/', env: ENV },
    ]);

    // 3. a real frame: the demo scene at 320×240, as the POV-Ray adapter runs it
    const scene = resolve(import.meta.dirname, '../demo/scene.pov');
    const adapter = createPovrayAdapter();
    const frame = (work: string) => adapter.plan({ renderer: 'povray', scene, frames: [1], resolution: { width: 320, height: 240 }, outputPattern: 'f_####.png', workDir: work })[0]!;
    const outside = frame(await workDir(dir, 'w-out'));
    const wIn = await workDir(dir, 'w-in', runAs);
    const inside = frame(wIn);
    console.log(`sandbox: ${o.frames} POV-Ray frames (320×240) each way`);
    const pov = await timeLoop(loop, dir, o.frames, [
      { name: 'outside', argv: outside.argv, cwd: outside.cwd, env: ENV },
      { name: 'inside', argv: sandboxArgv(plan(inputBinds({ files: [scene] }), wIn, adapter.sandboxPaths ?? []), inside.argv, inside.cwd, ENV), cwd: '/', env: ENV },
    ]);

    const s = { bare: med(start.bare!), box: med(start.sandbox!) };
    const t = { empty: med(over.empty!), tree: med(over.tree!) };
    const f = { out: med(pov.outside!), in: med(pov.inside!) };
    const row = (what: string, xs: number[]) => `| ${what} | ${xs.length} | ${f1(med(xs))} | ${f1(p99(xs))} |`;
    console.log(`sandbox: start +${f1(s.box - s.bare)} ms, tree +${f1(t.tree - t.empty)} ms, frame ${f1(((f.in - f.out) / f.out) * 100)} %`);
    return [
      `## The sandbox's cost (issue 15): ${machine}`,
      '',
      `bubblewrap ${host.version}${runAs ? ', the render server root (bwrap without a user namespace, setpriv to nobody inside)' : ', the render server unprivileged (a user namespace)'}; work dirs in ${o.dir}`,
      '(tools/bench/sandbox-cost.ts). Every start is runProcess through the fork server, as a render slot starts a renderer,',
      'timed from a plain `node` (sandbox-loop.ts); the two ways take turns. Goals: ≤ 15 ms median added a task, < 2 % on a real frame.',
      '',
      '| start | runs | median ms | p99 ms |',
      '|---|---|---|---|',
      row('`true`, bare', start.bare!),
      row('`true` in the sandbox (no inputs)', start.sandbox!),
      row('`true` in the sandbox (no inputs), beside the tree runs', over.empty!),
      row(`\`true\` in the sandbox over a peer's job of ${o.files} files (${binds.length} binds)`, over.tree!),
      row('POV-Ray, demo scene 320×240, outside', pov.outside!),
      row('POV-Ray, demo scene 320×240, inside', pov.inside!),
      '',
      `Added a task start: **${f1(s.box - s.bare)} ms** median (the p99s, ${f1(p99(start.bare!))} and ${f1(p99(start.sandbox!))} ms, follow the machine's load). The ${o.files} files' tree`,
      `(hard links from the peer's store, sites/cas/) took ${(tree.buildMs / 1000).toFixed(2)} s to build once a job; the start over it adds`,
      `${f1(t.tree - t.empty)} ms to an empty sandbox's (one bind a top-level folder, not a file). On a real frame: ${f1(f.in - f.out)} ms,`,
      `**${f1(((f.in - f.out) / f.out) * 100)} %** of ${f1(f.out)} ms.`,
      '',
    ].join('\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
