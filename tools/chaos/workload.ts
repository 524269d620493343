import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { frameFileName, type JobSpec } from '../../protocol/index.ts';

/*
 * What the chaos driver renders and how it checks the result. Command jobs run a small
 * shell script per frame that sleeps a duration drawn from the seed, writes the frame's
 * output to {output} (the file in the slot's private work dir that delivery renames into
 * place) and appends `start`/`end` lines to the job's ledger: the ledger shows how often
 * each frame really ran, whatever the scheduler believes. The POV-Ray job is a small real
 * animation whose PNGs are decoded and compared.
 */

export { mulberry32 } from '../lib/prng.ts';

export type Rng = () => number;
export const uniform = (rnd: Rng, lo: number, hi: number) => lo + (hi - lo) * rnd();

export interface PlannedJob {
  jobId: string;
  name: string;
  kind: 'command' | 'povray';
  spec: JobSpec;
  frames: number[];
  /** When to submit it, in ms after the chaos starts. */
  submitAtMs: number;
  outDir: string;
  pattern: string;
  ledger?: string;
  resolution?: { width: number; height: number };
  // submission, filled in by the driver
  tries: number;
  acceptedAt?: number;
  submitError?: string;
}

/** A tiny POV-Ray animation: a sphere that moves with the frame number (renderbus sets clock = frame). */
export const CHAOS_SCENE = `
camera { location <0, 1, -4> look_at <0, 0.5, 0> }
light_source { <4, 6, -6> color rgb 1 }
plane { y, 0 pigment { checker color rgb 1 color rgb 0.2 } }
sphere { <-1.5 + clock * 0.15, 0.5, 0>, 0.5 pigment { color rgb <1, 0.3, 0.2> } }
`;

/** The content a command frame must have. */
export const commandFrameText = (name: string, frame: number) => `renderbus-chaos job=${name} frame=${frame}\n`;

/** A frame's duration in seconds: mostly short, some a second or two, a few long. */
function frameSeconds(rnd: Rng): number {
  const r = rnd();
  const s = r < 0.7 ? uniform(rnd, 0.1, 0.8) : r < 0.95 ? uniform(rnd, 0.8, 2) : uniform(rnd, 2, 4);
  return Math.round(s * 100) / 100;
}

/** Mean of frameSeconds plus a frame's overhead on this farm (fork server, result round trip). */
const MEAN_FRAME_S = 0.85;

function frameScript(name: string, ledger: string, durations: Map<number, number>): string {
  const cases = [...durations].map(([f, d]) => `  ${f}) d=${d} ;;`).join('\n');
  // the ledger path and the job name are ours (no quotes or spaces in them)
  return `# renderbus chaos frame: sh ${name}.sh FRAME OUTPUT
f=$1
out=$2
echo "start $f $(date +%s%3N) $out \${CHAOS_HOST:-?}" >> '${ledger}'
case $f in
${cases}
  *) d=0.5 ;;
esac
sleep "$d"
printf 'renderbus-chaos job=%s frame=%s\\n' '${name}' "$f" > "$out"
echo "end $f $(date +%s%3N) $out \${CHAOS_HOST:-?}" >> '${ledger}'
`;
}

export interface WorkloadOptions {
  dir: string;
  seed: number;
  rnd: Rng;
  chaosMs: number;
  /** Render slots on the farm. */
  capacity: number;
  /** Fraction of the farm's capacity the command jobs fill (1: busy all the time without kills). */
  load: number;
  povFrames: number;
}

/**
 * Plans the jobs: a command job every `wave` ms (the first at the start) sized to keep the
 * farm busy until the next one, and the POV-Ray animation about a third into the chaos.
 * Writes each job's frame script, the scene, and creates the ledger directory.
 */
export async function planWorkload(o: WorkloadOptions): Promise<PlannedJob[]> {
  const jobsDir = join(o.dir, 'jobs');
  const ledgers = join(o.dir, 'ledgers');
  const out = join(o.dir, 'out');
  await Promise.all([mkdir(jobsDir, { recursive: true }), mkdir(ledgers, { recursive: true }), mkdir(out, { recursive: true })]);
  const waveMs = o.chaosMs >= 60_000 ? 20_000 : Math.max(8_000, Math.round(o.chaosMs / 3));
  const perWave = Math.max(10, Math.round(((waveMs / 1000) * o.capacity * o.load) / MEAN_FRAME_S));
  const chunks = [1, 1, 3, 1, 2];
  const prefix = `s${o.seed.toString(36)}`;
  const jobs: PlannedJob[] = [];
  for (let w = 0, at = 0; at === 0 || at < o.chaosMs - waveMs / 2; w++, at = w * waveMs) {
    const name = `cmd-${w + 1}`;
    const frames = Array.from({ length: perWave }, (_, i) => i + 1);
    const durations = new Map(frames.map((f) => [f, frameSeconds(o.rnd)]));
    const script = join(jobsDir, `${name}.sh`);
    const ledger = join(ledgers, `${name}.ledger`);
    await writeFile(script, frameScript(name, ledger, durations));
    const outDir = join(out, name);
    const pattern = `${name}_####.txt`;
    const chunk = chunks[w % chunks.length]!;
    jobs.push({
      jobId: `${prefix}-${name}`,
      name,
      kind: 'command',
      spec: { name, scene: script, renderer: 'command', command: 'sh {scene} {frame} {output}', frames: `1-${perWave}`, chunk, output: { dir: outDir, pattern } },
      frames,
      submitAtMs: at,
      outDir,
      pattern,
      ledger,
      tries: 0,
    });
  }
  if (o.povFrames > 0) {
    const scene = join(jobsDir, 'anim.pov');
    await writeFile(scene, CHAOS_SCENE);
    const outDir = join(out, 'anim');
    const pattern = 'anim_####.png';
    const resolution = { width: 96, height: 72 };
    jobs.push({
      jobId: `${prefix}-anim`,
      name: 'anim',
      kind: 'povray',
      spec: { name: 'anim', scene, frames: `1-${o.povFrames}`, chunk: 2, resolution: `${resolution.width}x${resolution.height}`, output: { dir: outDir, pattern } },
      frames: Array.from({ length: o.povFrames }, (_, i) => i + 1),
      submitAtMs: Math.round(o.chaosMs * 0.3),
      outDir,
      pattern,
      resolution,
      tries: 0,
    });
  }
  return jobs.sort((a, b) => a.submitAtMs - b.submitAtMs);
}

export interface OutputCheck {
  /** Frames whose final file is present and valid. */
  valid: number;
  /** What is wrong: missing or invalid frames, stray files. */
  problems: string[];
  /** Files left in the output's .rb-partial (work dirs of runs that were never delivered). */
  leftoverFiles: string[];
  leftoverDirs: string[];
}

/** Checks a job's output directory: every frame once at its final name and valid, nothing else. */
export async function checkOutputs(job: PlannedJob): Promise<OutputCheck> {
  const r: OutputCheck = { valid: 0, problems: [], leftoverFiles: [], leftoverDirs: [] };
  const entries = await readdir(job.outDir, { withFileTypes: true }).catch(() => null);
  if (!entries) {
    r.problems.push(`output directory ${job.outDir} does not exist`);
    return r;
  }
  const expected = new Map(job.frames.map((f) => [frameFileName(job.pattern, f), f]));
  for (const e of entries) {
    if (e.name === '.rb-partial' || e.name === '.rb-logs') continue;
    if (!expected.has(e.name)) r.problems.push(`stray ${e.isDirectory() ? 'directory' : 'file'} in the output: ${e.name}`);
    else if (!e.isFile()) r.problems.push(`${e.name} is not a regular file`);
  }
  const present = new Set(entries.filter((e) => e.isFile()).map((e) => e.name));
  const pngs: { frame: number; png: PNG }[] = [];
  for (const [file, frame] of expected) {
    if (!present.has(file)) {
      r.problems.push(`frame ${frame}: ${file} is missing`);
      continue;
    }
    const data = await readFile(join(job.outDir, file));
    if (job.kind === 'command') {
      const want = commandFrameText(job.name, frame);
      if (data.toString() !== want) r.problems.push(`frame ${frame}: ${file} holds ${JSON.stringify(data.toString().slice(0, 80))}, not ${JSON.stringify(want)}`);
      else r.valid += 1;
      continue;
    }
    try {
      const png = PNG.sync.read(data);
      if (job.resolution && (png.width !== job.resolution.width || png.height !== job.resolution.height)) {
        r.problems.push(`frame ${frame}: ${file} is ${png.width}x${png.height}, not ${job.resolution.width}x${job.resolution.height}`);
      } else {
        r.valid += 1;
        pngs.push({ frame, png });
      }
    } catch (err) {
      r.problems.push(`frame ${frame}: ${file} is not a valid PNG (${(err as Error).message}, ${data.length} bytes)`);
    }
  }
  if (pngs.length >= 2) {
    const first = pngs[0]!;
    const last = pngs[pngs.length - 1]!;
    if (first.png.data.equals(last.png.data)) r.problems.push(`frames ${first.frame} and ${last.frame} are the same picture: the animation does not move`);
  }
  const partial = join(job.outDir, '.rb-partial');
  for (const d of await readdir(partial, { withFileTypes: true }).catch(() => [])) {
    if (!d.isDirectory()) {
      r.leftoverFiles.push(join(partial, d.name));
      continue;
    }
    r.leftoverDirs.push(join(partial, d.name));
    for (const f of await readdir(join(partial, d.name)).catch(() => [] as string[])) r.leftoverFiles.push(join(partial, d.name, f));
  }
  return r;
}

export interface LedgerRun {
  frame: number;
  taskId: string;
  attempt: number;
  /** The render server it ran on. */
  host: string;
  startAt?: number;
  endAt?: number;
}

export interface LedgerEvent {
  what: 'start' | 'end';
  frame: number;
  at: number;
  taskId: string;
  attempt: number;
  host: string;
  /** The {output} path: the frame's file in the run's work dir. */
  out: string;
}

/** `<out>/.rb-partial/<taskId>-a<attempt>-<host>.<slot>/` (actors/render-slot/output.ts). */
const WORK_DIR_RE = /\.rb-partial\/(.+?)-a(\d+)(?:-[^/]*)?\//;

/** A command job's ledger: every frame start and end, in the order they were written. */
export async function readLedgerEvents(job: PlannedJob): Promise<LedgerEvent[]> {
  if (!job.ledger) return [];
  const text = await readFile(job.ledger, 'utf8').catch(() => '');
  const out: LedgerEvent[] = [];
  for (const line of text.split('\n')) {
    const m = /^(start|end) (\d+) (\d+) (\S+)(?: (\S+))?$/.exec(line);
    if (!m) continue;
    const w = WORK_DIR_RE.exec(m[4]!);
    out.push({ what: m[1] as 'start' | 'end', frame: Number(m[2]), at: Number(m[3]), taskId: w?.[1] ?? '?', attempt: Number(w?.[2] ?? 0), host: m[5] ?? '?', out: m[4]! });
  }
  return out;
}

/** The runs of a command job's frames: one entry per start, completed when an end followed. */
export function ledgerRuns(events: readonly LedgerEvent[]): LedgerRun[] {
  const runs: LedgerRun[] = [];
  const open = new Map<string, LedgerRun[]>();
  for (const e of events) {
    const key = `${e.frame} ${e.out} ${e.host}`;
    if (e.what === 'start') {
      const run: LedgerRun = { frame: e.frame, taskId: e.taskId, attempt: e.attempt, host: e.host, startAt: e.at };
      runs.push(run);
      open.set(key, [...(open.get(key) ?? []), run]);
      continue;
    }
    // the latest start of that file: an earlier one without an end was killed
    const run = open.get(key)?.pop();
    if (run) run.endAt = e.at;
    else runs.push({ frame: e.frame, taskId: e.taskId, attempt: e.attempt, host: e.host, endAt: e.at });
  }
  return runs;
}

/**
 * Task attempts that ran on two slots at the same time. A task's frames run in order; a new
 * run begins with a start of its first frame. When a run begins while an earlier run of the
 * same attempt is unfinished, and that earlier run writes to the ledger again afterwards,
 * both were alive at once: in one work dir, each wiping the other's files.
 */
export function concurrentAttempts(events: readonly LedgerEvent[]): { task: string; frames: number[]; at: number }[] {
  const byTask = new Map<string, LedgerEvent[]>();
  for (const e of events) {
    if (e.taskId === '?') continue;
    const k = `${e.taskId}-a${e.attempt}`;
    byTask.set(k, [...(byTask.get(k) ?? []), e]);
  }
  const found: { task: string; frames: number[]; at: number }[] = [];
  for (const [task, list] of byTask) {
    const frames = [...new Set(list.map((e) => e.frame))].sort((a, b) => a - b);
    const first = frames[0]!;
    const runs: { host: string; busy: number | null; done: boolean; suspect: boolean }[] = [];
    let hit: number | undefined;
    for (const e of list) {
      if (e.what === 'start' && e.frame === first) {
        for (const r of runs) if (!r.done) r.suspect = true;
        runs.push({ host: e.host, busy: first, done: false, suspect: false });
        continue;
      }
      // the newest run that can take the event: an older one may have been killed and never write again
      const r = [...runs].reverse().find((x) => !x.done && x.host === e.host && (e.what === 'start' ? x.busy === null : x.busy === e.frame));
      if (!r) continue;
      if (r.suspect) hit ??= e.at;
      if (e.what === 'start') r.busy = e.frame;
      else {
        r.busy = null;
        if (e.frame === frames[frames.length - 1]) r.done = true;
      }
    }
    if (hit !== undefined) found.push({ task, frames, at: hit });
  }
  return found;
}
