import { dirname, isAbsolute } from 'node:path';
import { BLENDER_ENGINES, FarmError } from '../../../protocol/index.ts';
import { LineTail, StreamLines } from './lines.ts';
import { checkConsecutive } from './povray.ts';
import type { Diagnosis, Invocation, OutputParser, Progress, RenderAdapter, RenderTask } from './types.ts';

/**
 * Blender (notes/renderers.md; Debian's 3.4.1). A task's consecutive frames render in ONE
 * process (Blender takes 1.5–4 s to start and load a scene), as `-s <first> -e <last> -j 1 -a`.
 *
 * - Cycles on the CPU by default (`--cycles-device`), one thread per slot (`-t 1`, as POV-Ray's
 *   `+WT1`: a slot is a core). The job's `blender` options choose engine, device, samples and
 *   denoising; the job's `resolution` overrides the scene's (at 100 %).
 * - The overrides go in as a Python expression run after the scene loads and before the render;
 *   with `--python-exit-code 1` a failure there is a failed task. The same expression first lists
 *   every image the scene reads from a file that is not there (Blender itself renders a missing
 *   texture pink and says nothing), and fails the task naming them: `RB_INPUT_NOT_FOUND`.
 * - `--factory-startup`: the host's user preferences and add-ons play no part. Scripts saved in
 *   the .blend run only when the job says `scripts: true` (`-y`: rigs with Python drivers need
 *   it); Blender goes on rendering after such a script fails, so its traceback fails the task.
 * - Frames are written as `f_<frame>.<ext>` in the work dir (`-o …/f_#### -x 1 -F <format>`).
 */

/** Output formats by the extension of the job's output pattern: Blender's `-F` (its command-line names: `TGA`, not the UI's `TARGA`, which it refuses and writes a PNG) and the extension it writes. */
const FORMATS: Record<string, { format: string; ext: string }> = {
  png: { format: 'PNG', ext: 'png' },
  jpg: { format: 'JPEG', ext: 'jpg' },
  jpeg: { format: 'JPEG', ext: 'jpg' },
  exr: { format: 'OPEN_EXR', ext: 'exr' },
  tif: { format: 'TIFF', ext: 'tif' },
  tiff: { format: 'TIFF', ext: 'tif' },
  tga: { format: 'TGA', ext: 'tga' },
  bmp: { format: 'BMP', ext: 'bmp' },
  hdr: { format: 'HDR', ext: 'hdr' },
};


/** A line the adapter's own Python prints for each missing input: `renderbus: missing file <path>`. */
const MISSING_PREFIX = 'renderbus: missing file ';

export interface BlenderAdapterOptions {
  /** The executable; `blender` on PATH by default. */
  bin?: string;
}

export function blenderFormat(outputPattern: string): { format: string; ext: string } {
  const dot = outputPattern.lastIndexOf('.');
  const ext = dot < 0 ? '' : outputPattern.slice(dot + 1).toLowerCase();
  const f = FORMATS[ext];
  if (!f) throw new FarmError('RB_BAD_JOB', `blender cannot write '.${ext}' files (output pattern '${outputPattern}'); use one of ${Object.keys(FORMATS).map((e) => `.${e}`).join(', ')}`);
  return f;
}

/** The file Blender writes for `frame` with `-o <workDir>/f_####`: at least 4 digits. */
export function blenderWorkFile(workDir: string, ext: string, frame: number): string {
  return `${workDir}/f_${String(frame).padStart(4, '0')}.${ext}`;
}

/**
 * The Python run after the scene loads: missing inputs fail the task; then the job's overrides.
 * Values are numbers and names from a closed set, never text of the job's.
 */
export function blenderPrelude(task: Pick<RenderTask, 'resolution' | 'blender'>): string {
  const b = task.blender ?? {};
  const lines = [
    'import bpy, os',
    's = bpy.context.scene',
    "missing = sorted({bpy.path.abspath(i.filepath) for i in bpy.data.images if i.source in {'FILE', 'SEQUENCE', 'MOVIE'} and i.packed_file is None and i.filepath and not os.path.exists(bpy.path.abspath(i.filepath))})",
    `for p in missing: print(${JSON.stringify(MISSING_PREFIX)} + p, flush=True)`,
    "if missing: raise RuntimeError('renderbus: the scene reads %d missing file(s)' % len(missing))",
  ];
  if (b.engine) lines.push(`s.render.engine = '${BLENDER_ENGINES[b.engine]}'`);
  if (task.resolution) lines.push(`s.render.resolution_x = ${task.resolution.width}`, `s.render.resolution_y = ${task.resolution.height}`, 's.render.resolution_percentage = 100');
  if (b.samples !== undefined) {
    lines.push(`if s.render.engine == 'CYCLES': s.cycles.samples = ${b.samples}`);
    lines.push(`if s.render.engine == 'BLENDER_EEVEE': s.eevee.taa_render_samples = ${b.samples}`);
  }
  if (b.denoise !== undefined) lines.push(`s.cycles.use_denoising = ${b.denoise ? 'True' : 'False'}`);
  return lines.join('\n');
}

export function createBlenderAdapter(o: BlenderAdapterOptions = {}): RenderAdapter {
  const bin = o.bin ?? 'blender';
  return {
    name: 'blender',
    // the job's resolution overrides the scene's; without one the scene's own size is right
    frameCheck: (task) => (task.resolution ? { size: task.resolution } : {}),
    plan(task: RenderTask): Invocation[] {
      checkConsecutive('blender', task.frames);
      if (!isAbsolute(task.scene)) throw new FarmError('RB_BAD_JOB', `blender: scene '${task.scene}' must be an absolute path`);
      const fmt = blenderFormat(task.outputPattern);
      const frames = [...task.frames];
      const first = frames[0]!;
      const last = frames[frames.length - 1]!;
      const argv = [
        bin, '-b', '--factory-startup', ...(task.blender?.scripts ? ['-y'] : []), task.scene,
        '--python-exit-code', '1', '--python-expr', blenderPrelude(task),
        '-o', `${task.workDir}/f_####`, '-F', fmt.format, '-x', '1',
        '-t', '1',
        '-s', String(first), '-e', String(last), '-j', '1', '-a',
        // after `--`: Cycles' own argument (ignored by the other engines)
        '--', '--cycles-device', task.blender?.device ?? 'CPU',
      ];
      // Blender resolves `//` paths against the .blend's folder whatever the cwd; run there anyway
      return [{ argv, cwd: dirname(task.scene), frames, outputs: frames.map((frame) => ({ frame, file: blenderWorkFile(task.workDir, fmt.ext, frame) })) }];
    },
    // the device is the last argument (`--cycles-device X`): a host without it is named in the error
    parser: (inv, onProgress) => new BlenderParser(inv.frames, onProgress, inv.argv[inv.argv.length - 1]),
  };
}

const FRA_RE = /^Fra:(\d+) /;
const CYCLES_SAMPLE_RE = /\| Sample (\d+)\/(\d+)/;
/** Cycles rendering in tiles (images over its tile size): `Rendered 5/8 Tiles, Sample 1/4`, the samples those of the tile being rendered. */
const CYCLES_TILE_RE = /\| Rendered (\d+)\/(\d+) Tiles, Sample (\d+)\/(\d+)/;
const EEVEE_SAMPLE_RE = /\| Rendering (\d+) \/ (\d+) samples/;
/** Cycles' own estimate: `Time:00:01.20 | Remaining:00:03.45` (hours when long: `01:02:03.45`). */
const REMAINING_RE = /\| Time:([\d:.]+) \| Remaining:([\d:.]+)/;

const seconds = (clock: string): number => clock.split(':').reduce((sum, part) => sum * 60 + Number(part), 0);

/** How far along a `Fra:` line says its frame is, 0–100, or undefined when it does not say. */
export function blenderPercent(line: string): number | undefined {
  const clamp = (x: number) => Math.max(0, Math.min(100, Math.floor(x)));
  const tile = CYCLES_TILE_RE.exec(line);
  if (tile) {
    const [done, tiles, sample, samples] = tile.slice(1).map(Number) as [number, number, number, number];
    return clamp(((done + Math.min(1, sample / Math.max(1, samples))) * 100) / Math.max(1, tiles));
  }
  const m = CYCLES_SAMPLE_RE.exec(line) ?? EEVEE_SAMPLE_RE.exec(line);
  if (m) return clamp((Number(m[1]) * 100) / Math.max(1, Number(m[2])));
  // no count on the line (a stage between samples): the time spent against Cycles' estimate of what remains
  const r = REMAINING_RE.exec(line);
  if (r) {
    const [spent, left] = [seconds(r[1]!), seconds(r[2]!)];
    if (Number.isFinite(spent) && Number.isFinite(left) && spent + left > 0) return clamp((spent * 100) / (spent + left));
  }
  return undefined;
}
const SAVED_RE = /^Saved: '(.*)'$/;

/** Reads Blender's stdout and stderr: `Fra:` progress lines (samples, tiles, `Remaining`: blenderPercent), `Saved:` per frame, its `Error:` lines and Python tracebacks. */
export class BlenderParser implements OutputParser {
  private readonly frames: readonly number[];
  private readonly onProgress: (p: Progress) => void;
  private readonly lines = new StreamLines((l) => this.line(l));
  private readonly tail = new LineTail(8);
  private readonly errors: string[] = [];
  private readonly missing: string[] = [];
  /** The last line of a Python traceback (`ValueError: …`), once one was seen. */
  private pythonError: string | undefined;
  private inTraceback = false;
  /** Where the traceback's last frame was: `/proj/s.blend/rig.py`. */
  private scriptFile: string | undefined;
  private saved = 0;
  private lastPercent = -1;
  private lastFrame = -1;

  /** Cycles' device the task asked for (`CPU`, `CUDA`…). */
  private readonly device: string;

  constructor(frames: readonly number[], onProgress: (p: Progress) => void, device = 'CPU') {
    this.frames = frames;
    this.onProgress = onProgress;
    this.device = device;
  }

  push(stream: 'stdout' | 'stderr', text: string): void {
    this.lines.push(stream, text);
  }

  end(): void {
    this.lines.end();
  }

  finishedFrames(): number[] {
    return this.frames.slice(0, this.saved);
  }

  errorText(): string {
    if (this.missing.length > 0) return `the scene reads files that are not there: ${this.missing.join(', ')}`;
    if (this.pythonError !== undefined) return `Python: ${this.pythonError}`;
    if (this.errors.length > 0) return [...new Set(this.errors)].join(' ');
    return this.tail.text();
  }

  /**
   * A .blend that is not there is input this host cannot see (RB_INPUT_NOT_FOUND), and so is a
   * file the scene reads (the prelude names them); one that is no .blend, or a Python error, is
   * the scene's (RB_SCENE_ERROR); a Blender built without the denoiser the scene asks for, or a
   * host without the job's Cycles device (a GPU), is this host's missing part (RB_RENDERER_MISSING:
   * another host may have it).
   */
  diagnose(where: string): Diagnosis | undefined {
    if (this.missing.length > 0) {
      return { code: 'RB_INPUT_NOT_FOUND', message: `blender: the scene reads ${this.missing.length === 1 ? 'a file' : 'files'} that ${where} cannot see: ${this.missing.join(', ')} (send ${this.missing.length === 1 ? 'it' : 'them'} as support files, or pack ${this.missing.length === 1 ? 'it' : 'them'} into the .blend)` };
    }
    const unread = this.errors.find((e) => /^Error: Cannot read file '.*': No such file or directory/.test(e));
    if (unread !== undefined) return { code: 'RB_INPUT_NOT_FOUND', message: `blender: ${unread} (the scene cannot be read on ${where})` };
    const format = this.errors.find((e) => /^Error: File format is not supported/.test(e));
    if (format !== undefined) return { code: 'RB_SCENE_ERROR', message: `blender: ${format} (it is not a .blend file Blender can read)` };
    // Blender 3.4 with `--cycles-device CUDA` and no such GPU: this line, exit 1, nothing rendered
    if (this.errors.some((e) => /^Error: Found no Cycles device of the specified type/.test(e))) {
      return { code: 'RB_RENDERER_MISSING', message: `blender: Cycles found no ${this.device} device on ${where} (the job's "blender": {"device": "${this.device}"}): a host with one renders it` };
    }
    if (this.errors.some((e) => /Build without OpenImageDenoiser/.test(e))) {
      return { code: 'RB_RENDERER_MISSING', message: `blender: the scene denoises with OpenImageDenoise, which the Blender on ${where} is built without (Debian's is); turn denoising off in the scene or with the job's "blender": {"denoise": false}` };
    }
    if (this.pythonError !== undefined) return { code: 'RB_SCENE_ERROR', message: `blender: Python: ${this.pythonError}` };
    return undefined;
  }

  /** A scene's own script (`scripts: true`) that failed as the scene loaded: Blender renders on, the frames may be wrong. */
  failureDespiteExit0(): Diagnosis | undefined {
    if (this.pythonError === undefined) return undefined;
    return { code: 'RB_SCENE_ERROR', message: `blender: the scene's Python failed: ${this.pythonError}${this.scriptFile !== undefined ? ` (in ${this.scriptFile})` : ''}` };
  }

  private line(line: string): void {
    if (line.startsWith(MISSING_PREFIX)) {
      this.missing.push(line.slice(MISSING_PREFIX.length));
      return;
    }
    const fra = FRA_RE.exec(line);
    if (fra) {
      this.inTraceback = false;
      const frame = Number(fra[1]);
      const percent = blenderPercent(line) ?? (frame !== this.lastFrame ? 0 : -1);
      if (percent >= 0 && (frame !== this.lastFrame || percent !== this.lastPercent) && this.frames.includes(frame)) {
        this.lastFrame = frame;
        this.lastPercent = percent;
        this.onProgress({ frame, percent });
      }
      if (/\| Build without OpenImageDenoiser/.test(line)) this.errors.push('Build without OpenImageDenoiser');
      return;
    }
    if (SAVED_RE.test(line)) {
      this.saved = Math.min(this.frames.length, this.saved + 1);
      return;
    }
    if (line.startsWith('Error: Python: Traceback')) {
      this.inTraceback = true;
      return;
    }
    if (this.inTraceback) {
      // the traceback's last unindented line is the exception: `ValueError: boom`
      const file = /^ {2}File "([^"]+)", line \d+/.exec(line);
      if (file) this.scriptFile = file[1] === '<string>' ? undefined : file[1];
      if (!line.startsWith(' ') && !line.startsWith('Error: script failed')) {
        this.pythonError = line.trim();
        this.inTraceback = false;
      }
      return;
    }
    if (line.startsWith('Error:')) this.errors.push(line.trim());
    this.tail.add(line);
  }
}
