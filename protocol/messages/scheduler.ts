import { Type, type Static } from '@sinclair/typebox';
import { Millis, Reply, Token, V } from './common.ts';
import { JobSpec } from './job-spec.ts';
import { TaskStats } from './task.ts';
import { OutsourceSummary } from './outsource.ts';
import { PlacementSummary } from './quote.ts';
import { JobOrigin } from './intake.ts';

export const JobState = {
  Queued: 'queued',
  /** Held at submission: nothing is dispatched until it is released. */
  Held: 'held',
  Rendering: 'rendering',
  /** Paused: no new frames start (tasks held in hand go back to the queue); running ones finish. */
  Paused: 'paused',
  /** Sent to a linked site (`site`) and rendering there; frames come back into its output folder. */
  Outsourced: 'outsourced',
  Done: 'done',
  Failed: 'failed',
  Cancelled: 'cancelled',
} as const;
export type JobState = (typeof JobState)[keyof typeof JobState];
const JobStateSchema = Type.Union(Object.values(JobState).map((s) => Type.Literal(s)));

export const FrameState = { Queued: 'queued', Running: 'running', Done: 'done', Failed: 'failed', Cancelled: 'cancelled' } as const;
export type FrameState = (typeof FrameState)[keyof typeof FrameState];
const FrameStateSchema = Type.Union(Object.values(FrameState).map((s) => Type.Literal(s)));

/** Client → scheduler, request on `sched.submit`. `jobId` may be chosen by the client (idempotent retry). */
export const SubmitRequest = Type.Object({ v: V, spec: JobSpec, jobId: Type.Optional(Token) });
export type SubmitRequest = Static<typeof SubmitRequest>;
export const SubmitReply = Reply(Type.Object({ jobId: Token, frames: Type.Integer(), tasks: Type.Integer() }));
export type SubmitReply = Static<typeof SubmitReply>;

export const FrameCounts = Type.Object({
  total: Type.Integer({ minimum: 0 }),
  queued: Type.Integer({ minimum: 0 }),
  /** Frames a slot is rendering: started on their slot, not merely handed to it. */
  running: Type.Integer({ minimum: 0 }),
  done: Type.Integer({ minimum: 0 }),
  failed: Type.Integer({ minimum: 0 }),
  /**
   * Frames handed to a slot that has not started them yet: held in hand behind the task it
   * renders, or on their way to it. Not in `running`. Absent: none (or a scheduler that counted them as running).
   */
  inHand: Type.Optional(Type.Integer({ minimum: 0 })),
});
export type FrameCounts = Static<typeof FrameCounts>;

/** Why a job is not rendering right now, for people (`text`) and for tools (`kind` and details). */
export const WaitReason = Type.Object({
  kind: Type.Union([
    Type.Literal('held'), Type.Literal('paused'), Type.Literal('after'), Type.Literal('no-hosts'),
    Type.Literal('no-match'), Type.Literal('busy'), Type.Literal('bad-hosts'), Type.Literal('registry'), Type.Literal('limit'), Type.Literal('sick-hosts'),
    Type.Literal('share'), Type.Literal('outsourced'), Type.Literal('quotes'), Type.Literal('split'),
  ]),
  /** share: its project holds its share of the busy slots or more, and other projects wait under theirs. */
  share: Type.Optional(Type.Object({ project: Type.String(), running: Type.Integer({ minimum: 0 }), entitled: Type.Number({ minimum: 0 }) })),
  /** limit: the limit at its maximum (or not set on this farm: max absent). */
  limit: Type.Optional(Type.Object({ name: Token, inUse: Type.Integer({ minimum: 0 }), max: Type.Optional(Type.Integer({ minimum: 0 })) })),
  text: Type.String(),
  /** after: the job it waits for, and that job's state. */
  job: Type.Optional(Token),
  jobState: Type.Optional(Type.String()),
  /** no-match: the nearest hosts and what each lacks. */
  closest: Type.Optional(Type.Array(Type.Object({ host: Token, missing: Type.Array(Type.String()) }))),
  /** busy: slots that run more urgent jobs, jobs of its priority submitted earlier, and less urgent ones that started first. */
  busy: Type.Optional(Type.Object({ moreUrgent: Type.Integer({ minimum: 0 }), samePriority: Type.Integer({ minimum: 0 }), lessUrgent: Type.Integer({ minimum: 0 }) })),
  /** bad-hosts: hosts kept away after failing too many of its tasks. */
  hosts: Type.Optional(Type.Array(Token)),
});
export type WaitReason = Static<typeof WaitReason>;

/** One job as `renderbus jobs` lists it. */
export const JobSummary = Type.Object({
  jobId: Token,
  name: Type.String(),
  user: Type.String(),
  group: Type.String(),
  /** The project it counts against in fair share (its group unless set). */
  project: Type.String(),
  priority: Type.Integer(),
  state: JobStateSchema,
  counts: FrameCounts,
  submittedAt: Millis,
  startedAt: Type.Optional(Millis),
  finishedAt: Type.Optional(Millis),
  /** Why the job is not rendering right now, when it is waiting (`why.text`). */
  waiting: Type.Optional(Type.String()),
  why: Type.Optional(WaitReason),
  outputDir: Type.String(),
  /** A failed job: why the whole job failed (`RB_JOB_FAILED: ...`, with the renderer's own error line). */
  error: Type.Optional(Type.String()),
  /** `retry` would change something: failed frames to queue again, or hosts kept away from the job to forgive. */
  retryable: Type.Optional(Type.Boolean()),
  /** Estimated milliseconds to completion, from measured frame times. */
  etaMs: Type.Optional(Type.Number({ minimum: 0 })),
  /** A job sent to a linked site (its `site`): where it stands there. */
  outsourced: Type.Optional(OutsourceSummary),
  /** A job that said `site: auto`: where it was placed, every quote, and why (docs/federation.md, "Choosing where to render: quotes"). */
  placement: Type.Optional(PlacementSummary),
  /** A split job (docs/federation.md, "Split jobs"): its parts, where each renders and how far it is. */
  parts: Type.Optional(Type.Array(Type.Object({ jobId: Token, site: Token, here: Type.Optional(Type.Boolean()), frames: Type.String(), state: JobStateSchema, counts: FrameCounts }))),
  /** A part of a split job: that job's id. */
  partOf: Type.Optional(Token),
  /** A peer's job rendered here (docs/federation.md, "Intake at the vendor"): that site and its job id there. */
  origin: Type.Optional(JobOrigin),
});
export type JobSummary = Static<typeof JobSummary>;

/** One failed attempt of a frame's task, kept in the frame's record. */
export const FrameAttempt = Type.Object({
  attempt: Type.Integer({ minimum: 1 }),
  host: Type.String(),
  slot: Type.Integer({ minimum: 0 }),
  /** `<code>: <message>`, as the slot reported it. */
  error: Type.String(),
  /** When its slot started it; absent when that is not known (a result older than start times). */
  startedAt: Type.Optional(Millis),
  finishedAt: Millis,
});
export type FrameAttempt = Static<typeof FrameAttempt>;

export const FrameRecord = Type.Object({
  frame: Type.Integer({ minimum: 0 }),
  state: FrameStateSchema,
  taskIndex: Type.Integer({ minimum: 0 }),
  attempt: Type.Integer({ minimum: 0 }),
  host: Type.Optional(Type.String()),
  slot: Type.Optional(Type.Integer()),
  /** When the slot really started the current attempt (not when it was handed the task). */
  startedAt: Type.Optional(Millis),
  finishedAt: Type.Optional(Millis),
  /** When the current attempt was handed to its slot. */
  handedAt: Type.Optional(Millis),
  /** State running, but its slot holds it in hand and has not started it yet. */
  inHand: Type.Optional(Type.Boolean()),
  output: Type.Optional(Type.String()),
  error: Type.Optional(Type.String()),
  stats: Type.Optional(TaskStats),
  /** Its task's failed attempts, oldest first: the last MAX_FRAME_ATTEMPTS of them. */
  attempts: Type.Optional(Type.Array(FrameAttempt)),
});
export type FrameRecord = Static<typeof FrameRecord>;
/** A frame record keeps this many of its task's failed attempts (the latest). */
export const MAX_FRAME_ATTEMPTS = 10;

export const JobDetail = Type.Composite([JobSummary, Type.Object({ spec: JobSpec, frames: Type.Array(FrameRecord) })]);
export type JobDetail = Static<typeof JobDetail>;

/**
 * Anyone → scheduler, request on `sched.query`. A large answer comes in pages that each fit one
 * message (5,000 jobs, or the frames of a 60,000-frame job, do not): `{ v, what }` alone asks for
 * the first page; while a reply says `more`, ask again with the cursor it gives (`after` = its
 * `next` for jobs, `afterFrame` = its last frame for a job). tools/cli/query-pages.ts does this.
 */
export const QueryRequest = Type.Union([
  Type.Object({
    v: V,
    what: Type.Literal('jobs'),
    /** The `next` cursor of the previous page: jobs that come after it in the listing's order. */
    after: Type.Optional(Type.String({ maxLength: 200 })),
    /** At most this many jobs in the page (fewer when they would not fit one message). */
    limit: Type.Optional(Type.Integer({ minimum: 1 })),
  }),
  Type.Object({
    v: V,
    what: Type.Literal('job'),
    jobId: Type.String(),
    /** Only frames after this one (the last frame of the previous page); frames come in ascending order. */
    afterFrame: Type.Optional(Type.Integer({ minimum: 0 })),
    /** At most this many frames in the page (fewer when they would not fit one message). */
    limit: Type.Optional(Type.Integer({ minimum: 1 })),
  }),
]);
export type QueryRequest = Static<typeof QueryRequest>;
/** True: more follow this page; ask again with its cursor. Absent from a scheduler older than paging, which sent everything. */
const More = Type.Optional(Type.Boolean());
export const JobsReply = Reply(Type.Object({
  jobs: Type.Array(JobSummary),
  more: More,
  /** With `more`: the cursor to send as `after` for the next page. */
  next: Type.Optional(Type.String()),
}));
export type JobsReply = Static<typeof JobsReply>;
export type JobsBody = Extract<JobsReply, { ok: true }>['body'];
export const JobReply = Reply(Type.Object({
  job: JobDetail,
  more: More,
  /** The job left the scheduler's memory (retention): read back from the journal. */
  archived: Type.Optional(Type.Boolean()),
}));
export type JobReply = Static<typeof JobReply>;
export type JobBody = Extract<JobReply, { ok: true }>['body'];
/** What `sched.query` answers: `{ jobs }` for what 'jobs', `{ job }` for what 'job'. */
export const QueryReply = Reply(Type.Union([
  Type.Object({ jobs: Type.Array(JobSummary), more: More, next: Type.Optional(Type.String()) }),
  Type.Object({ job: JobDetail, more: More, archived: Type.Optional(Type.Boolean()) }),
]));
export type QueryReply = Static<typeof QueryReply>;

/** Anyone → scheduler, request on `sched.ctl`: steer a job. */
/**
 * Steer a job: `cancel` (running frames are killed), `pause` (no new frames start: tasks held
 * in hand are handed back to the queue, no attempt used; running ones finish), `resume`, `release` (a job held at submission), `retry` (failed frames, or the chosen
 * `frames` whatever their state, are queued again), `priority` (the new `priority`).
 */
export const CtlRequest = Type.Object({
  v: V,
  action: Type.Union([Type.Literal('cancel'), Type.Literal('pause'), Type.Literal('resume'), Type.Literal('release'), Type.Literal('retry'), Type.Literal('priority')]),
  jobId: Type.String(),
  /** With `priority`: the new priority (lower is more urgent). */
  priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
  /** With `retry`: these frames (done or failed) are queued again; without, every failed frame. */
  frames: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1, maxItems: 1_000_000 })),
});
export type CtlRequest = Static<typeof CtlRequest>;
export const CtlReply = Reply(Type.Object({
  job: JobSummary,
  /** retry: what it did (absent from a scheduler older than this field). */
  retried: Type.Optional(Type.Object({ frames: Type.Integer({ minimum: 0 }), hosts: Type.Array(Type.String()) })),
}));
export type CtlReply = Static<typeof CtlReply>;

/** Scheduler → anyone, on `evt.job.<job>.<event>` (submitted, started, progress, waiting, done, failed, cancelled). */
export const JobEvent = Type.Object({
  v: V,
  jobId: Token,
  event: Type.String(),
  at: Millis,
  job: JobSummary,
  /** For failed jobs: which frames failed and why. */
  failures: Type.Optional(Type.Array(Type.Object({ frame: Type.Integer(), error: Type.String() }))),
});
export type JobEvent = Static<typeof JobEvent>;

/** A running task's process figures (its whole process tree), as its slot measures them. */
export const LiveStats = Type.Object({
  /** Since the task's first process started. */
  wallMs: Type.Number({ minimum: 0 }),
  /** CPU time so far (user + system, ended processes included). */
  cpuMs: Type.Number({ minimum: 0 }),
  /** CPU use over the last interval, 100 = one core. */
  cpuPercent: Type.Number({ minimum: 0 }),
  /** Resident memory now, summed over the tree. */
  rssKb: Type.Number({ minimum: 0 }),
  peakRssKb: Type.Number({ minimum: 0 }),
  /** Bytes read / written through system calls (/proc/<pid>/io rchar/wchar, pipes included) by the live processes. */
  readBytes: Type.Optional(Type.Number({ minimum: 0 })),
  writtenBytes: Type.Optional(Type.Number({ minimum: 0 })),
});
export type LiveStats = Static<typeof LiveStats>;

/**
 * Scheduler or render server → anyone, on `evt.frame.<job>.<frame>.<event>` (dispatched, started,
 * progress, stats, done, failed). An event about a task's frames is one message, not one per
 * frame: `frame` (and the subject) name the task's first frame and `frames` lists them all
 * (`eventFrames` reads either form).
 */
export const FrameEvent = Type.Object({
  v: V,
  jobId: Token,
  frame: Type.Integer({ minimum: 0 }),
  /** Every frame the event is about, when they are more than `frame` alone (a task of several frames). */
  frames: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1, maxItems: 10_000 })),
  event: Type.String(),
  at: Millis,
  host: Type.Optional(Type.String()),
  slot: Type.Optional(Type.Integer()),
  attempt: Type.Optional(Type.Integer()),
  /** Percent of the frame rendered (progress events). */
  percent: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
  /** Done events of one frame: its output file. */
  output: Type.Optional(Type.String()),
  /** Done events of several frames: each one's output file. */
  outputs: Type.Optional(Type.Array(Type.Object({ frame: Type.Integer({ minimum: 0 }), path: Type.String() }), { maxItems: 10_000 })),
  error: Type.Optional(Type.String()),
  stats: Type.Optional(TaskStats),
  /** Started events: how long the slot stood idle before this task reached it. */
  waitMs: Type.Optional(Type.Number({ minimum: 0 })),
  /** Stats events (every ~2 s while the frame's task runs): its process figures. */
  live: Type.Optional(LiveStats),
  /** Started events: the task's log file (the renderer's output) on the render host's filesystem. */
  log: Type.Optional(Type.String()),
});
export type FrameEvent = Static<typeof FrameEvent>;

/** A frame event's fields naming these frames (a task's, in order), with their output files for a done event. */
export function aboutFrames(frames: readonly number[], outputs?: readonly { frame: number; path: string }[]): Pick<FrameEvent, 'frame' | 'frames' | 'output' | 'outputs'> {
  const frame = frames[0]!;
  if (frames.length === 1) {
    const output = outputs?.find((o) => o.frame === frame)?.path;
    return output !== undefined ? { frame, output } : { frame };
  }
  const mine = new Set(frames);
  const outs = outputs?.filter((o) => mine.has(o.frame)).map((o) => ({ frame: o.frame, path: o.path }));
  return { frame, frames: [...frames], ...(outs && outs.length > 0 ? { outputs: outs } : {}) };
}

/** The frames a frame event is about, each with its output file when the event says it. */
export function eventFrames(evt: FrameEvent): { frame: number; output?: string }[] {
  if (!evt.frames) return [evt.output !== undefined ? { frame: evt.frame, output: evt.output } : { frame: evt.frame }];
  const paths = evt.outputs ? new Map(evt.outputs.map((o) => [o.frame, o.path])) : null;
  return evt.frames.map((frame) => {
    const output = paths?.get(frame) ?? (frame === evt.frame ? evt.output : undefined);
    return output !== undefined ? { frame, output } : { frame };
  });
}
