import { Type, type Static } from '@sinclair/typebox';
import { Token } from './common.ts';
import { JobNotify } from './notify.ts';

/** Renderers the farm can drive; `command` runs any command template (README.md, "Jobs"). */
export const RendererName = Type.Union([Type.Literal('povray'), Type.Literal('command')]);
export type RendererName = Static<typeof RendererName>;
export const RENDERERS: readonly RendererName[] = ['povray', 'command'];

/**
 * Hardware and software a job needs. Every field is optional ("don't care"); patterns
 * are `[family/]type[@version]` with `*` wildcards (protocol/profile.ts). Numbers are minimums.
 */
export const Requirements = Type.Object(
  {
    machine: Type.Optional(Type.String({ description: "machine family/type, e.g. 'x86_64/*'" })),
    os: Type.Optional(Type.String({ description: "OS [family/]type@version, e.g. 'linux@6.*'" })),
    cpu: Type.Optional(Type.String({ description: "CPU family/type, e.g. 'intel/*xeon*'" })),
    cpuCount: Type.Optional(Type.Integer({ minimum: 0, description: 'minimum CPU count' })),
    cpuMhz: Type.Optional(Type.Number({ minimum: 0, description: 'minimum CPU speed in MHz' })),
    ramMb: Type.Optional(Type.Integer({ minimum: 0, description: 'minimum RAM in MB' })),
    swapMb: Type.Optional(Type.Integer({ minimum: 0, description: 'minimum swap in MB' })),
    packages: Type.Optional(Type.Array(Type.String(), { description: "rendering packages, e.g. 'povray@3.7.*'" })),
    licenses: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'named licenses the host must hold' })),
  },
  { additionalProperties: false },
);
export type Requirements = Static<typeof Requirements>;

/** The job description a client submits (the job file's schema; README.md, "Jobs"). */
export const JobSpec = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'display name' })),
    scene: Type.String({ minLength: 1, description: 'scene file; absolute once submitted' }),
    renderer: Type.Optional(RendererName),
    command: Type.Optional(Type.String({ minLength: 1, description: 'command template for renderer "command"' })),
    frames: Type.String({ minLength: 1, description: "frames: '1-100', '1-100x5', '1,5,10-12'" }),
    chunk: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000, description: 'frames per task (with taskDuration: the first tasks\' size)' })),
    taskDuration: Type.Optional(Type.Number({ minimum: 1, maximum: 24 * 3600, description: 'seconds each task should last: the scheduler grows or shrinks the chunk from measured frame times' })),
    memoryMb: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 * 1024 * 1024, description: 'MB of memory a task may use: hosts with less RAM do not take it; a task over it is stopped (RB_OUT_OF_MEMORY) and retried with 1.5 times as much' })),
    maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'tries per task before its frames fail; default 3' })),
    maxHostFailures: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'a host that fails this many tasks of the job gets no more of them; default 3' })),
    stallLimit: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 30 * 24 * 3600, description: 'seconds a task may print nothing (no progress) before it is killed and retried' })),
    timeLimit: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 30 * 24 * 3600, description: 'seconds a task may run before it is killed and retried' })),
    resolution: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$', description: "'WIDTHxHEIGHT'" })),
    priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, description: 'lower is more urgent; default 50' })),
    previewFirst: Type.Optional(Type.Boolean({ description: 'render the first, last and middle frames first, then the rest' })),
    hold: Type.Optional(Type.Boolean({ description: 'queue the job held: nothing runs until it is released' })),
    limits: Type.Optional(Type.Array(Token, { minItems: 1, maxItems: 20, description: "named limits the job's tasks count against, e.g. ['maya'] (renderbus limit)" })),
    afterFrames: Type.Optional(Type.Array(Token, { minItems: 1, maxItems: 100, description: 'ids of jobs whose frame N must be done before frame N of this one starts (frames they do not have do not wait)' })),
    after: Type.Optional(Type.Array(Token, { minItems: 1, maxItems: 100, description: 'ids of jobs that must be done before this one starts (e.g. comp after render)' })),
    user: Type.Optional(Type.String({ minLength: 1 })),
    group: Type.Optional(Type.String({ minLength: 1 })),
    project: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'project (show) the job counts against in fair share; default: its group' })),
    notify: Type.Optional(JobNotify),
    requirements: Type.Optional(Requirements),
    supportFiles: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    output: Type.Optional(
      Type.Object(
        {
          dir: Type.Optional(Type.String({ minLength: 1, description: 'where frames land; absolute once submitted' })),
          pattern: Type.Optional(Type.String({ pattern: '^[^/#]*#[^/]*$', description: "file name with '#' for the frame number, e.g. 'shot_####.png'" })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type JobSpec = Static<typeof JobSpec>;

export const DEFAULT_PRIORITY = 50;
export const DEFAULT_OUTPUT_PATTERN = 'frame_####.png';
