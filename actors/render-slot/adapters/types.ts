import type { BlenderOptions, ErrorCode, OutputPatterns, Resolution } from '../../../protocol/index.ts';

/** Size used when a job names no resolution (POV-Ray's own default, too). */
export const DEFAULT_RESOLUTION: Resolution = { width: 320, height: 240 };

/** What an adapter needs to know about one task: the assignment, reduced to rendering. */
export interface RenderTask {
  renderer: string;
  /** Absolute path of the scene file. */
  scene: string;
  /** Command template (renderer `command` only). */
  command?: string;
  /** Consecutive frames, ascending. */
  frames: readonly number[];
  resolution?: Resolution;
  /** A Blender job's settings over its scene's. */
  blender?: BlenderOptions;
  /** A command job's output patterns (protocol/output-patterns.ts), as regex sources. */
  progress?: string;
  errors?: readonly string[];
  sceneErrors?: readonly string[];
  /** The job's output file pattern (`frame_####.png`); gives the extension. */
  outputPattern: string;
  /** Private, empty, writable directory for this attempt (absolute). */
  workDir: string;
}

/** One file a frame is expected to leave in the work dir. */
export interface ExpectedOutput {
  frame: number;
  /** Absolute path inside the work dir. */
  file: string;
}

/** One process to run: argv and cwd, never a shell unless the user's own template asks for one. */
export interface Invocation {
  argv: string[];
  cwd: string;
  /** Frames this process renders, ascending. */
  frames: number[];
  /** Files this process must leave behind when it exits 0 (empty: it writes none we track). */
  outputs: ExpectedOutput[];
  /** How to read this process's output, when the job said (renderer `command`): compiled once per task. */
  patterns?: OutputPatterns;
}

/** Progress the renderer reported: the frame it works on and how far along it is. */
export interface Progress {
  frame: number;
  /** 0–100 of that frame. */
  percent: number;
}

/** Reads one invocation's output as it streams, line by line (lines end in '\r' or '\n'). */
export interface OutputParser {
  push(stream: 'stdout' | 'stderr', text: string): void;
  /** Flushes a last unterminated line. */
  end(): void;
  /** Frames the renderer finished so far, as far as its output tells (ascending). */
  finishedFrames(): number[];
  /** The renderer's own error text, or a tail of its output when it gave none. */
  errorText(): string;
  /**
   * Whose fault a failed run was, when the renderer's output tells: the scene's (RB_SCENE_ERROR),
   * input this host cannot see (RB_INPUT_NOT_FOUND), a part of the renderer missing here
   * (RB_RENDERER_MISSING). Undefined: a plain failure (RB_RENDER_FAILED). `where` names the
   * host in messages (`host node-7`).
   */
  diagnose?(where: string): Diagnosis | undefined;
  /**
   * A run that exited 0 but whose output says it went wrong (Blender goes on rendering after a
   * scene's own script failed): the task fails with this. Undefined: the run succeeded.
   */
  failureDespiteExit0?(where: string): Diagnosis | undefined;
}

/** A failure the adapter could place, with the renderer's own error line in the message. */
export interface Diagnosis {
  code: ErrorCode;
  message: string;
}

export interface RenderAdapter {
  readonly name: string;
  /** Turns a task into processes to run in order; throws FarmError RB_BAD_JOB on a bad task. */
  plan(task: RenderTask): Invocation[];
  /** A fresh parser for one invocation; `onProgress` is called as the renderer reports progress; `env` is the renderer's environment. */
  parser(inv: Invocation, onProgress: (p: Progress) => void, env?: Readonly<Record<string, string>>): OutputParser;
  /**
   * How a frame is checked before it is delivered (frame-check.ts): a file named as an image
   * must decode as one, and be of `size` when given, the resolution the renderer was told
   * (absent: the scene's own is right). Without `frameCheck` a frame need only be a non-empty file.
   */
  frameCheck?(task: RenderTask): { size?: Resolution };
  /** Paths outside /usr the renderer reads (its configuration), shown read-only in the sandbox (sandbox.ts). */
  readonly sandboxPaths?: readonly string[];
}
