import { dirname, isAbsolute } from 'node:path';
import { FarmError } from '../../../protocol/index.ts';
import { LineTail, StreamLines } from './lines.ts';
import { includeFileName, povrayLibrary, standardIncludeMissing } from './povray-library.ts';
import { DEFAULT_RESOLUTION, type Diagnosis, type Invocation, type OutputParser, type Progress, type RenderAdapter, type RenderTask } from './types.ts';

/**
 * POV-Ray 3.7 (notes/renderers.md). A task's consecutive frames render in ONE process
 * (each process costs ~0.6 s to start), as a subset `+SF/+EF` of an animation.
 *
 * Clock rule: **`clock` equals `frame_number`** in every frame, however the job is chunked.
 * POV-Ray computes `clock = KI + (frame - KFI) * (KF - KI) / (KFF - KFI)`; we pass
 * `+KFI<first> +KFF<last+1> +KI<first> +KF<last+1>`, which makes that exactly `frame`.
 * (The animation is one frame longer than the task so that a single-frame task is still an
 * animation: with KFI = KFF POV-Ray sets clock to NaN.) Scenes therefore animate on
 * `clock` (or `frame_number`) as a frame number, e.g. `rotate y * clock * 10`, and must not
 * use `initial_frame`, `final_frame`, `initial_clock` or `final_clock`, which describe
 * only the chunk. Two chunkings of the same frames render the same pixels.
 */

/** Output formats by the extension of the job's output pattern: POV-Ray flag and the extension it writes. */
const FORMATS: Record<string, { flag: string; ext: string }> = {
  png: { flag: '+FN', ext: 'png' },
  tga: { flag: '+FT', ext: 'tga' },
  exr: { flag: '+FE', ext: 'exr' },
  hdr: { flag: '+FH', ext: 'hdr' },
  jpg: { flag: '+FJ', ext: 'jpg' },
  jpeg: { flag: '+FJ', ext: 'jpg' },
  bmp: { flag: '+FB', ext: 'bmp' },
  ppm: { flag: '+FP', ext: 'ppm' },
};

export interface PovrayOptions {
  /** The executable; `povray` on PATH by default. */
  bin?: string;
  /** POV-Ray's Library_Path (tests); by default read from its povray.ini when an include is missing (povray-library.ts). */
  libraryPath?: readonly string[];
}

/** Throws unless frames are non-empty, ascending and consecutive. */
export function checkConsecutive(renderer: string, frames: readonly number[]): void {
  if (frames.length === 0) throw new FarmError('RB_BAD_JOB', `${renderer}: the task has no frames`);
  for (let i = 1; i < frames.length; i++) {
    if (frames[i] !== frames[i - 1]! + 1) {
      throw new FarmError('RB_BAD_JOB', `${renderer}: a task must hold consecutive frames, got ${frames[i - 1]} then ${frames[i]}`);
    }
  }
}

/** POV-Ray option values are quoted; a path holding '"' cannot be passed at all. */
function quoted(what: string, path: string): string {
  if (path.includes('"')) throw new FarmError('RB_BAD_JOB', `povray: ${what} path '${path}' contains '"', which POV-Ray cannot take`);
  return `"${path}"`;
}

/** The file POV-Ray writes for `frame`: numbered with as many digits as the animation's final frame. */
export function povrayWorkFile(workDir: string, ext: string, frame: number, finalFrame: number): string {
  return `${workDir}/f${String(frame).padStart(String(finalFrame).length, '0')}.${ext}`;
}

export function povrayFormat(outputPattern: string): { flag: string; ext: string } {
  const dot = outputPattern.lastIndexOf('.');
  const ext = dot < 0 ? '' : outputPattern.slice(dot + 1).toLowerCase();
  const f = FORMATS[ext];
  if (!f) {
    throw new FarmError('RB_BAD_JOB', `povray cannot write '.${ext}' files (output pattern '${outputPattern}'); use one of ${Object.keys(FORMATS).map((e) => `.${e}`).join(', ')}`);
  }
  return f;
}

export function createPovrayAdapter(o: PovrayOptions = {}): RenderAdapter {
  const bin = o.bin ?? 'povray';
  return {
    name: 'povray',
    // its configuration (povray.ini names the include library, which lies under /usr)
    sandboxPaths: ['/etc/povray'],
    // POV-Ray is always told a size: the job's, or its default
    frameCheck: (task) => ({ size: task.resolution ?? DEFAULT_RESOLUTION }),
    plan(task: RenderTask): Invocation[] {
      checkConsecutive('povray', task.frames);
      if (!isAbsolute(task.scene)) throw new FarmError('RB_BAD_JOB', `povray: scene '${task.scene}' must be an absolute path`);
      const fmt = povrayFormat(task.outputPattern);
      const frames = [...task.frames];
      const first = frames[0]!;
      const last = frames[frames.length - 1]!;
      const final = last + 1; // see the clock rule above
      const sceneDir = dirname(task.scene);
      const { width, height } = task.resolution ?? DEFAULT_RESOLUTION;
      const argv = [
        bin,
        `+I${quoted('scene', task.scene)}`,
        `+L${quoted('scene directory', sceneDir)}`,
        `+O${quoted('work directory', `${task.workDir}/f.${fmt.ext}`)}`,
        fmt.flag,
        `+KFI${first}`,
        `+KFF${final}`,
        `+KI${first}`,
        `+KF${final}`,
        `+SF${first}`,
        `+EF${last}`,
        '-D',
        '-GS',
        '-GR',
        '+V',
        `+W${width}`,
        `+H${height}`,
        '+WT1',
      ];
      return [{ argv, cwd: sceneDir, frames, outputs: frames.map((frame) => ({ frame, file: povrayWorkFile(task.workDir, fmt.ext, frame, final) })) }];
    },
    parser: (inv, onProgress, env) =>
      // an include search path is only needed to explain a missing include: read then, not per frame
      new PovrayParser(inv.frames, onProgress, () => [
        inv.cwd,
        ...(o.libraryPath ?? povrayLibrary({ cwd: inv.cwd, ...(env?.HOME !== undefined ? { home: env.HOME } : {}), ...(env?.POVINI !== undefined ? { povini: env.POVINI } : {}) }).dirs),
      ]),
  };
}

const FRAME_RE = /^Rendering frame (\d+) of (\d+)/;
const PIXELS_RE = /^Rendered (\d+) of (\d+) pixels \((\d+)%\)/;
// Lines that open an error report; continuation lines are appended to it.
const ERROR_RE = /Parse Error|Error:|Fatal error|Cannot |Unable to|Could not|Render failed|Render cancelled|Possible Parse Error|Out of memory/;
const NOISE_RE = /^povray: cannot open the user configuration file/;
// A line that starts a report of its own, even right after a line of full width.
const REPORT_START_RE = /^(File '|Possible Parse Error|Parse Error|Fatal error|Render failed|Render cancelled)/;
// POV-Ray wraps messages at 80 columns: a wrapped line is followed by its continuation.
const WRAP = 79;

/** Reads POV-Ray's stderr: frame and pixel progress, and its error reports. */
export class PovrayParser implements OutputParser {
  private readonly frames: readonly number[];
  private readonly onProgress: (p: Progress) => void;
  private readonly lines = new StreamLines((l) => this.line(l));
  private readonly tail = new LineTail(8);
  private readonly errors: string[] = [];
  private open = false; // the last line belongs to an error report still being continued
  private prevLen = 0;
  private index = 0; // 1-based position in the chunk of the frame being rendered; 0 before the first

  private readonly includeDirs: () => readonly string[];

  /** `includeDirs`: where POV-Ray looks for include files (the scene's directory, then its Library_Path). */
  constructor(frames: readonly number[], onProgress: (p: Progress) => void, includeDirs: () => readonly string[] = () => []) {
    this.frames = frames;
    this.onProgress = onProgress;
    this.includeDirs = includeDirs;
  }

  push(stream: 'stdout' | 'stderr', text: string): void {
    this.lines.push(stream, text);
  }

  end(): void {
    this.lines.end();
  }

  finishedFrames(): number[] {
    return this.frames.slice(0, Math.max(0, this.index - 1));
  }

  errorText(): string {
    const parse = this.errors.find((e) => e.includes('Parse Error:') && !e.includes('Possible Parse Error'));
    if (parse) return parse;
    const specific = this.errors.find((e) => !/^(Render failed|Fatal error in parser|Render cancelled)/.test(e));
    if (specific) return [...new Set(this.errors.filter((e) => e !== 'Render failed'))].join(' ');
    if (this.errors.length > 0) return this.errors.join(' ');
    return this.tail.text();
  }

  /**
   * A failure in POV-Ray's parser is the scene's (RB_SCENE_ERROR, with its own `Parse Error`
   * line: file, line and what is wrong), with two exceptions: a main scene it cannot open is
   * input this host cannot see (RB_INPUT_NOT_FOUND), and one of POV-Ray's standard includes
   * (colors.inc...) missing from every directory searched is this host's missing part
   * (RB_RENDERER_MISSING: povray-includes is not installed). Anything else is left undiagnosed.
   */
  diagnose(where: string): Diagnosis | undefined {
    const parse = this.errors.find((e) => e.includes('Parse Error:') && !e.includes('Possible Parse Error'));
    if (parse !== undefined) {
      if (/Parse Error: Cannot open input file/.test(parse)) {
        const path = this.errors.map((e) => /Cannot find file '([^']*)'/.exec(e)?.[1]).find((x) => x !== undefined);
        return { code: 'RB_INPUT_NOT_FOUND', message: `povray: ${parse} (${path !== undefined ? `the scene ${path}` : 'the scene'} cannot be read on ${where})` };
      }
      const inc = /Parse Error: Cannot open include file (.+?)\.?$/.exec(parse);
      if (inc) {
        const name = inc[1]!;
        const dirs = [...new Set(this.includeDirs())];
        const searched = `include path searched: ${dirs.length > 0 ? dirs.join(', ') : 'none'}`;
        if (standardIncludeMissing(name, dirs)) {
          return {
            code: 'RB_RENDERER_MISSING',
            message: `povray: ${parse} ${includeFileName(name)} is one of POV-Ray's standard include files, which are not installed on ${where} (${searched}; Debian/Ubuntu: apt-get install povray-includes)`,
          };
        }
        return { code: 'RB_SCENE_ERROR', message: `povray: ${parse} (${searched})` };
      }
      return { code: 'RB_SCENE_ERROR', message: `povray: ${parse}` };
    }
    const fatal = this.errors.find((e) => e.startsWith('Fatal error in parser'));
    if (fatal !== undefined) {
      // e.g. an image map that is not there: POV-Ray names it only in "Possible Parse Error" lines
      const cause = this.errors.filter((e) => /Possible Parse Error: Cannot/.test(e));
      return { code: 'RB_SCENE_ERROR', message: `povray: ${[...cause, fatal].join(' ')}` };
    }
    return undefined;
  }

  /** The frame being rendered now, if one started. */
  currentFrame(): number | undefined {
    return this.index > 0 ? this.frames[this.index - 1] : undefined;
  }

  private line(line: string): void {
    const wrapped = this.prevLen >= WRAP;
    this.prevLen = line.length;
    let m = PIXELS_RE.exec(line);
    if (m) {
      const frame = this.currentFrame();
      if (frame !== undefined) this.onProgress({ frame, percent: Math.min(100, Number(m[3])) });
      this.open = false;
      return;
    }
    m = FRAME_RE.exec(line);
    if (m) {
      const n = Math.min(Number(m[1]), this.frames.length);
      if (n !== this.index) {
        this.index = n;
        this.onProgress({ frame: this.frames[n - 1]!, percent: 0 });
      }
      this.open = false;
      return;
    }
    if (NOISE_RE.test(line)) return;
    if (this.open && (line.startsWith(' ') || (wrapped && !REPORT_START_RE.test(line)))) {
      this.errors[this.errors.length - 1] += line;
      return;
    }
    this.open = ERROR_RE.test(line);
    if (this.open) this.errors.push(line.trim());
    this.tail.add(line);
  }
}
