import { Type, type Static } from '@sinclair/typebox';
import { Millis, Token, V } from './common.ts';
import { JobSpec } from './job-spec.ts';
import { TaskStats } from './task.ts';
import { LimitRecord } from './limits.ts';
import { ShareRecord } from './shares.ts';
import { BudgetRecord } from './budgets.ts';
import { OutsourceRecord, RemoteRecord } from './outsource.ts';
import { JobOrigin } from './intake.ts';
import { PlaceRecord } from './quote.ts';

/** A task's ended attempt (done, or failed: retried or for good). */
export const TaskRecord = Type.Object({
  v: V,
  kind: Type.Literal('task'),
  jobId: Token,
  taskIndex: Type.Integer({ minimum: 0 }),
  status: Type.Union([Type.Literal('done'), Type.Literal('failed')]),
  attempt: Type.Integer({ minimum: 1 }),
  host: Type.String(),
  slot: Type.Integer({ minimum: 0 }),
  outputs: Type.Array(Type.Object({ frame: Type.Integer(), path: Type.String() })),
  error: Type.Optional(Type.String()),
  /** A failed attempt that was queued again (counts toward the job's maxAttempts after a restart). */
  retry: Type.Optional(Type.Boolean()),
  /** This failure ended the whole job (a broken scene, its error budget spent): `RB_JOB_FAILED: ...`, rebuilt on replay. */
  jobFailed: Type.Optional(Type.String()),
  /**
   * taskDuration: this result made the scheduler split the job's tasks not handed out yet
   * again: those at order positions `from` on (all but `keep`) became tasks of `size` frames,
   * appended with new indices.
   */
  rechunk: Type.Optional(Type.Object({ from: Type.Integer({ minimum: 0 }), keep: Type.Array(Type.Integer({ minimum: 0 })), size: Type.Integer({ minimum: 1, maximum: 10000 }) })),
  stats: TaskStats,
  /** When its slot started this attempt, as the scheduler knew it. */
  startedAt: Type.Optional(Millis),
  at: Millis,
});

/**
 * The scheduler's durable journal (JetStream stream, subjects `rb.<site>.journal.<kind>`):
 * replayed in order after a restart to rebuild the queue. Kinds: submit, task, cancel, ctl, limit, share, budget, remote,
 * outsource, place (and batch: several task records in one message, JournalEntry).
 */
export const JournalRecord = Type.Union([
  /** `origin`: a peer's job, submitted by the intake (sched.intake). */
  Type.Object({ v: V, kind: Type.Literal('submit'), jobId: Token, spec: JobSpec, at: Millis, origin: Type.Optional(JobOrigin) }),
  TaskRecord,
  Type.Object({ v: V, kind: Type.Literal('cancel'), jobId: Token, at: Millis }),
  LimitRecord,
  ShareRecord,
  BudgetRecord,
  RemoteRecord,
  OutsourceRecord,
  PlaceRecord,
  /** A control action other than cancel, as accepted (CtlRequest's fields). */
  Type.Object({
    v: V,
    kind: Type.Literal('ctl'),
    jobId: Token,
    action: Type.Union([Type.Literal('pause'), Type.Literal('resume'), Type.Literal('release'), Type.Literal('retry'), Type.Literal('priority')]),
    priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
    frames: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }))),
    at: Millis,
  }),
]);
export type JournalRecord = Static<typeof JournalRecord>;

/**
 * What is written to the stream: one record, or task records that were appended in the same
 * turn of the scheduler's loop, stored as one message (one JetStream write for many results).
 */
export const JournalEntry = Type.Union([
  JournalRecord,
  Type.Object({ v: V, kind: Type.Literal('batch'), records: Type.Array(TaskRecord, { minItems: 1, maxItems: 1000 }) }),
]);
export type JournalEntry = Static<typeof JournalEntry>;
