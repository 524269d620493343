import { Type, type Static } from '@sinclair/typebox';
import { Reply, Resolution, Token, V } from './common.ts';
import { BlenderOptions, JobEnv, RendererName } from './job-spec.ts';

/**
 * One task (a frame or a chunk of consecutive frames) leased to one slot. `attempt`
 * grows with each dispatch of the same task, so a late result of an older attempt is known.
 */
export const TaskAssignment = Type.Object({
  taskId: Type.String({ minLength: 1, description: '<jobId>.<taskIndex>' }),
  jobId: Token,
  taskIndex: Type.Integer({ minimum: 0 }),
  attempt: Type.Integer({ minimum: 1 }),
  slot: Type.Integer({ minimum: 0 }),
  frames: Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 }),
  renderer: RendererName,
  scene: Type.String({ minLength: 1 }),
  command: Type.Optional(Type.String()),
  /** A Blender job's settings over its scene's. */
  blender: Type.Optional(BlenderOptions),
  /** A command job's progress regex (protocol/output-patterns.ts); the slot compiles it once per task. */
  progress: Type.Optional(Type.String()),
  /** A command job's error-line regexes. */
  errors: Type.Optional(Type.Array(Type.String())),
  /** A command job's scene-error regexes: a match makes a failure RB_SCENE_ERROR. */
  sceneErrors: Type.Optional(Type.Array(Type.String())),
  resolution: Type.Optional(Resolution),
  outputDir: Type.String({ minLength: 1 }),
  outputPattern: Type.String({ minLength: 1 }),
  /** The slot kills the task (RB_TIMEOUT) when it runs longer than this. */
  timeLimitMs: Type.Optional(Type.Integer({ minimum: 1 })),
  /** The slot kills the task (RB_TIMEOUT) when its renderer prints nothing for this long. */
  stallLimitMs: Type.Optional(Type.Integer({ minimum: 1 })),
  /** The slot stops the task (RB_OUT_OF_MEMORY) when its processes use more memory than this. */
  memoryLimitMb: Type.Optional(Type.Integer({ minimum: 1 })),
  /** The job's own environment variables; the renderer gets these and the farm's few, nothing else. */
  env: Type.Optional(JobEnv),
  /**
   * Render inside the I/O wrapper (actors/render-slot/sandbox.ts): `files`, the scene and support
   * files, whose folders it sees; or `root`, a peer's job's tree shown at the original paths.
   */
  sandbox: Type.Optional(Type.Object({ files: Type.Optional(Type.Array(Type.String({ minLength: 1 }))), root: Type.Optional(Type.String({ minLength: 1 })) })),
});
export type TaskAssignment = Static<typeof TaskAssignment>;

/** Scheduler → render server, request on `host.<host>.assign`. */
export const AssignRequest = Type.Object({ v: V, host: Token, assignments: Type.Array(TaskAssignment, { minItems: 1 }) });
export type AssignRequest = Static<typeof AssignRequest>;
export const AssignReply = Reply(
  Type.Object({
    accepted: Type.Array(Type.String()),
    rejected: Type.Array(Type.Object({ taskId: Type.String(), code: Type.String(), message: Type.String() })),
  }),
);
export type AssignReply = Static<typeof AssignReply>;

/** Per-task accounting the slot measured (DESIGN §5). */
export const TaskStats = Type.Object({
  wallMs: Type.Number({ minimum: 0 }),
  cpuMs: Type.Number({ minimum: 0 }),
  peakRssKb: Type.Number({ minimum: 0 }),
  bytesWritten: Type.Number({ minimum: 0 }),
});
export type TaskStats = Static<typeof TaskStats>;

/** Render server → scheduler, request on `sched.result`: a task ended. The reply may carry the slot's next task. */
export const TaskResult = Type.Object({
  v: V,
  host: Token,
  slot: Type.Integer({ minimum: 0 }),
  taskId: Type.String({ minLength: 1 }),
  jobId: Token,
  taskIndex: Type.Integer({ minimum: 0 }),
  attempt: Type.Integer({ minimum: 1 }),
  /** `returned`: handed back unrendered (the server is draining); not counted as an attempt. */
  status: Type.Union([Type.Literal('done'), Type.Literal('failed'), Type.Literal('returned')]),
  /** Final paths of the frames stored, by frame number. */
  outputs: Type.Array(Type.Object({ frame: Type.Integer({ minimum: 0 }), path: Type.String() })),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
  stats: TaskStats,
  /** False when the render server is draining and wants no next task. */
  wantNext: Type.Boolean(),
  /**
   * How many tasks the slot would take: 2 when it has nothing to render (one to start, one to
   * hold in hand), 1 when it already started the task it held (the scheduler counts that one
   * running, started now, from then on). Absent: 1 if wantNext, else 0.
   */
  want: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 })),
});
export type TaskResult = Static<typeof TaskResult>;
/**
 * `next`: the slot's next task, started at once by a slot with nothing to render, held in hand by
 * a busy one. `following`: one more to hold, when the slot wanted two.
 */
export const TaskResultReply = Reply(
  Type.Object({
    next: Type.Union([TaskAssignment, Type.Null()]),
    following: Type.Optional(Type.Union([TaskAssignment, Type.Null()])),
  }),
);
export type TaskResultReply = Static<typeof TaskResultReply>;
