import { Type, type Static } from '@sinclair/typebox';
import { Token } from './common.ts';
import { JobNotify } from './notify.ts';

/** Renderers the farm can drive; `command` runs any command template (README.md, "Jobs"). */
export const RendererName = Type.Union([Type.Literal('povray'), Type.Literal('blender'), Type.Literal('command')]);
export type RendererName = Static<typeof RendererName>;
export const RENDERERS: readonly RendererName[] = ['povray', 'blender', 'command'];

/** A Blender job's render settings over the scene's own (actors/render-slot/adapters/blender.ts). */
export const BlenderOptions = Type.Object(
  {
    engine: Type.Optional(Type.Union([Type.Literal('cycles'), Type.Literal('eevee'), Type.Literal('workbench')], { description: "render engine; default: the scene's" })),
    device: Type.Optional(Type.Union(['CPU', 'CUDA', 'OPTIX', 'HIP', 'ONEAPI', 'METAL'].map((d) => Type.Literal(d)), { description: "Cycles' device; default CPU" })),
    samples: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: "samples per pixel (Cycles, Eevee); default: the scene's" })),
    denoise: Type.Optional(Type.Boolean({ description: "Cycles' denoising on or off; default: the scene's (Debian's Blender has no OpenImageDenoise: say false there)" })),
    scripts: Type.Optional(Type.Boolean({ description: "run the scene's own Python (rigs' drivers, registered scripts; Blender's -y); default false: Blender skips them. A script that fails then fails the task" })),
  },
  { additionalProperties: false },
);
export type BlenderOptions = Static<typeof BlenderOptions>;

/** A Blender job's `engine` as Blender names it (`scene.render.engine`), and as a host's probe reports it. */
export const BLENDER_ENGINES: Record<NonNullable<BlenderOptions['engine']>, string> = { cycles: 'CYCLES', eevee: 'BLENDER_EEVEE', workbench: 'BLENDER_WORKBENCH' };

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
    engines: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: "render engines as 'package:ENGINE', e.g. 'blender:BLENDER_EEVEE' (a Blender job's `engine` adds its own)" })),
  },
  { additionalProperties: false },
);
export type Requirements = Static<typeof Requirements>;

/** Limits on a job's `env`: it travels with every task, so it stays small. */
export const JOB_ENV_LIMITS = { vars: 64, nameChars: 128, valueChars: 4096, totalChars: 16 * 1024 } as const;
/** POSIX portable variable names (IEEE Std 1003.1, 8.1): letters, digits and '_', not starting with a digit. */
export const ENV_NAME = '^[A-Za-z_][A-Za-z0-9_]*$';
/**
 * Names a job may not set: they choose which program runs or what it loads before the renderer
 * starts (a POV-Ray job could otherwise run code of its own choosing).
 */
export const RESERVED_ENV = /^(PATH|IFS|ENV|BASH_ENV|LD_.*)$/;

/** A job's own environment variables, given to its renderer on top of the farm's few (README.md, "Jobs"). */
export const JobEnv = Type.Record(
  Type.String({ pattern: ENV_NAME, maxLength: JOB_ENV_LIMITS.nameChars }),
  Type.String({ maxLength: JOB_ENV_LIMITS.valueChars, pattern: '^[^\\u0000]*$' }),
  { maxProperties: JOB_ENV_LIMITS.vars, additionalProperties: false, description: "variables for the renderer, e.g. { \"OCIO\": \"/studio/aces.ocio\" }" },
);
export type JobEnv = Static<typeof JobEnv>;

/**
 * What the schema cannot say about a job's `env`: a bad or reserved name, a NUL in a value, the
 * total size. Each problem names the variable. Empty when it is fine.
 */
export function jobEnvProblems(env: Record<string, unknown>): { name?: string; message: string }[] {
  const out: { name?: string; message: string }[] = [];
  const names = Object.keys(env);
  if (names.length > JOB_ENV_LIMITS.vars) out.push({ message: `${names.length} variables, at most ${JOB_ENV_LIMITS.vars}` });
  let total = 0;
  for (const name of names) {
    const value = env[name];
    total += name.length + (typeof value === 'string' ? value.length : 0) + 2;
    if (!new RegExp(ENV_NAME).test(name) || name.length > JOB_ENV_LIMITS.nameChars) {
      out.push({ name, message: `'${name.slice(0, 60)}' is not a variable name (letters, digits and '_', not starting with a digit; at most ${JOB_ENV_LIMITS.nameChars})` });
    } else if (RESERVED_ENV.test(name)) {
      out.push({ name, message: `${name} is the farm's to set, not a job's (PATH, IFS, ENV, BASH_ENV and LD_* choose what runs)` });
    } else if (typeof value !== 'string') {
      out.push({ name, message: `the value must be a string, got ${value === null ? 'null' : typeof value}` });
    } else if (value.includes('\0')) {
      out.push({ name, message: 'the value holds a NUL character' });
    } else if (value.length > JOB_ENV_LIMITS.valueChars) {
      out.push({ name, message: `the value is ${value.length} characters, at most ${JOB_ENV_LIMITS.valueChars}` });
    }
  }
  if (total > JOB_ENV_LIMITS.totalChars) out.push({ message: `the variables take ${total} characters, at most ${JOB_ENV_LIMITS.totalChars} in all` });
  return out;
}

/** The job description a client submits (the job file's schema; README.md, "Jobs"). */
export const JobSpec = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'display name' })),
    scene: Type.String({ minLength: 1, description: 'scene file; absolute once submitted' }),
    renderer: Type.Optional(RendererName),
    command: Type.Optional(Type.String({ minLength: 1, description: 'command template for renderer "command"' })),
    blender: Type.Optional(BlenderOptions),
    progress: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: "renderer 'command': a regex whose named groups give progress: (?<percent>…), or (?<done>…) and (?<total>…), plus optionally (?<frame>…) naming the frame (alone: that frame starts); docs/renderers.md, \"Templates for other renderers\"" })),
    errors: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { minItems: 1, maxItems: 8, description: "renderer 'command': regexes; the lines they match are the task's error text when it fails (instead of the output's last lines)" })),
    sceneErrors: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { minItems: 1, maxItems: 8, description: "renderer 'command': regexes; a failed task whose output has a line they match failed by its scene's fault (RB_SCENE_ERROR): the job fails at once instead of retrying" })),
    frames: Type.String({ minLength: 1, description: "frames: '1-100', '1-100x5', '1,5,10-12'" }),
    chunk: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000, description: 'frames per task (with taskDuration: the first tasks\' size)' })),
    taskDuration: Type.Optional(Type.Number({ minimum: 1, maximum: 24 * 3600, description: 'seconds each task should last: the scheduler grows or shrinks the chunk from measured frame times' })),
    memoryMb: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 * 1024 * 1024, description: 'MB of memory a task may use: hosts with less RAM do not take it; a task over it is stopped (RB_OUT_OF_MEMORY) and retried with 1.5 times as much' })),
    maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'tries per task before its frames fail; default 3' })),
    maxTaskErrors: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000, description: 'failed attempts of the whole job (all its tasks together) after which the job fails (RB_JOB_FAILED); default 50' })),
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
    site: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9_-]*$', maxLength: 64, description: "render at this linked site (a peer's name, `renderbus sites`) instead of on the local farm; 'auto': ask every linked peer for a quote and render where it finishes first within the budget; docs/federation.md" })),
    budget: Type.Optional(Type.String({ minLength: 1, maxLength: 40, description: "the most the job may cost at a peer, e.g. '12.50 EUR' (with site: auto: a quote over it, or in another currency, is skipped)" })),
    encryptResults: Type.Optional(
      Type.Union([Type.Boolean(), Type.Object({ purge: Type.Boolean() }, { additionalProperties: false })], {
        description: "when outsourced: the vendor returns every file encrypted to this site's result key, and (unless `{purge: false}`) removes its clear copies once the result is sent; docs/federation.md, \"Encrypted results\"",
      }),
    ),
    rerenderOf: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9_-]*$', maxLength: 64, description: 'the ended job whose frames this one renders again (`renderbus rerender`); sent to a site, the vendor renders from the inputs it kept of that job and no file is sent; docs/federation.md, "Retention and re-renders"' })),
    split: Type.Optional(Type.Boolean({ description: "with site: auto (or the site's overflow policy): its frames may be divided between here and one or more peers so that every part finishes at about the same time; docs/federation.md, \"Split jobs\"" })),
    chain: Type.Optional(Type.Boolean({ description: "with site (or the site's policy): the site it goes to may pass it on to its own peers (chaining; docs/federation.md \"Chaining\"); default false: the job goes only where this site sends it" })),
    user: Type.Optional(Type.String({ minLength: 1 })),
    group: Type.Optional(Type.String({ minLength: 1 })),
    project: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'project (show) the job counts against in fair share; default: its group' })),
    notify: Type.Optional(JobNotify),
    requirements: Type.Optional(Requirements),
    supportFiles: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    sandbox: Type.Optional(
      Type.Union([
        Type.Boolean(),
        Type.Object({ root: Type.String({ minLength: 1, description: "the folder holding a peer's job's files at their original paths (set by the intake only)" }) }, { additionalProperties: false }),
      ], { description: 'render inside the I/O wrapper (bubblewrap): the job sees its own files, writes only its frames, has no network (docs/security.md); only hosts that can sandbox take it' }),
    ),
    env: Type.Optional(JobEnv),
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
