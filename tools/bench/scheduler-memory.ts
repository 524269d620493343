import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { JobBook } from '../../actors/scheduler/index.ts';
import { DEFAULT_OUTPUT_PATTERN, frameFileName, prepareJob, type JobSpec } from '../../protocol/index.ts';

/*
 * Issue 12: "15 submits of 1,000,000 frames took the whole farm down, and its replay died again".
 * What one job costs the scheduler's heap, in this plain process (no NATS: the scheduler's queue
 * is its JobBook, and a journal replay rebuilds it from the same records). Heap used is read
 * after a full garbage collection, before and after:
 *  - submit: a job is prepared and queued, as `sched.submit` does;
 *  - replay: a fresh book rebuilt from the job's submit record and, when `doneTasks` > 0, that
 *    many journalled task results, as a restarted scheduler does (the records are made here).
 * The figure is what the job keeps (retained), not the peak while it is being added.
 */
export interface MemoryOptions {
  frames: number;
  /** Frames per task (1: a task per frame, the worst case). */
  chunks: number[];
  /** Tasks with a journalled result in the replay rows. */
  doneTasks: number;
}

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** The JS heap used plus array buffers (typed arrays live outside the heap). */
function heapUsed(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

function specOf(frames: number, chunk: number): JobSpec {
  return { scene: '/bench/scene.pov', frames: `1-${frames}`, chunk, output: { dir: '/bench/out' }, user: 'bench', group: 'bench' };
}

/** Heap a job keeps, submitted, or replayed with `done` task results; the book is kept alive until measured. */
function measure(spec: JobSpec, done: number): { bytes: number; ms: number } {
  const before = heapUsed();
  const t0 = performance.now();
  const book = new JobBook();
  const job = book.add('bench-job', spec, prepareJob(spec), 1_000);
  for (let i = 0; i < done; i++) {
    const first = 1 + i * (spec.chunk ?? 1);
    // where render servers put a frame's file (output.ts)
    const outputs = Array.from({ length: spec.chunk ?? 1 }, (_, k) => ({ frame: first + k, path: `/bench/out/${frameFileName(DEFAULT_OUTPUT_PATTERN, first + k)}` }));
    book.restoreEnded(job, i, 'done', { outputs, stats: { wallMs: 1000, cpuMs: 900, peakRssKb: 50_000, bytesWritten: 10_000 }, finishedAt: 2_000 + i, host: 'node-1', slot: i % 16, attempt: 1 });
  }
  book.finishReplay();
  const ms = performance.now() - t0;
  const bytes = heapUsed() - before;
  if (book.summary(job).counts.total !== spec.frames.split('-').map(Number).reduce((a, b) => b - a + 1)) throw new Error('the job lost frames');
  return { bytes, ms };
}

export function memoryBench(o: MemoryOptions, machine: string): string {
  const rows: string[] = [];
  for (const chunk of o.chunks) {
    const spec = specOf(o.frames, chunk);
    const tasks = Math.ceil(o.frames / chunk);
    const submit = measure(spec, 0);
    rows.push(`| submit | ${chunk} | ${tasks.toLocaleString('en')} | 0 | ${mb(submit.bytes)} | ${Math.round(submit.ms)} |`);
    const done = Math.min(o.doneTasks, tasks);
    if (done > 0) {
      const replay = measure(spec, done);
      rows.push(`| replay | ${chunk} | ${tasks.toLocaleString('en')} | ${done.toLocaleString('en')} | ${mb(replay.bytes)} | ${Math.round(replay.ms)} |`);
    }
    console.log(rows.slice(-2).join('\n'));
  }
  return [
    `## Scheduler memory per job (issue 12): ${machine}`,
    '',
    `One job of ${o.frames.toLocaleString('en')} frames in a JobBook, in a plain process (tools/bench/scheduler-memory.ts): heap used (with array buffers) after a full GC, before and after the job was submitted (prepared and queued), or replayed (rebuilt from its submit record and the journalled results of its first tasks). The job must cost well under 50 MB.`,
    '',
    '| | chunk | tasks | tasks done | heap kept (MB) | time (ms) |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
