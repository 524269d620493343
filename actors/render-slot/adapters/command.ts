import { basename, dirname } from 'node:path';
import { parse, quote } from 'shell-quote';
import { compileOutputPatterns, FarmError, frameFileName, matchesAny, readProgress, type OutputPatterns } from '../../../protocol/index.ts';
import { LineSplitter, LineTail } from './lines.ts';
import { DEFAULT_RESOLUTION, type Diagnosis, type Invocation, type OutputParser, type Progress, type RenderAdapter, type RenderTask } from './types.ts';

/**
 * The generic command adapter: any renderer driven by a template such as
 * `kick -i {scene} -o {output} -frame {frame}` or `blender -b {scene} -o {outdir}/frame_#### -s {first} -e {last} -a`.
 *
 * - The template is split into argv like a POSIX shell would (quotes, backslashes) but no
 *   shell runs it: `|`, `>`, `;`, `&&` are refused, `*` is not expanded, `$X` is not replaced.
 *   A template that needs a shell says so itself: `sh -c '...'`.
 * - Tokens are replaced inside each argument: `{frame}` `{first}` `{last}` (optionally
 *   zero-padded, `{frame:4}`), `{scene}`, `{output}`, `{outdir}`, `{width}`, `{height}`.
 *   A value never splits or joins arguments. Inside the script of `sh -c` (bash, dash...)
 *   values are shell-quoted, so a scene named `$(rm -rf ~).pov` stays a name: do not quote
 *   tokens there yourself.
 * - With `{frame}` or `{output}` the command runs once per frame, in order; otherwise once
 *   for the whole task.
 * - A frame file named as an image (`.png`, `.exr`…: frame-check.ts) must decode as that image,
 *   and be of the job's resolution when the job gives one and the template passes it on
 *   (`{width}`/`{height}`): a renderer not told the size renders the scene's own. Files of other
 *   names need only be non-empty.
 * - `{output}` is the frame's file in the private work dir, named by the job's output pattern.
 *   `{outdir}` is the work dir itself: the command must write files named by the output
 *   pattern there. Either way a frame whose file is missing after exit 0 fails. A template
 *   that names neither writes its output elsewhere and reports no files.
 */

const TOKENS = ['frame', 'first', 'last', 'output', 'scene', 'outdir', 'width', 'height'] as const;
type TokenName = (typeof TOKENS)[number];
const TOKEN_RE = /\{([a-z]+)(?::(\d{1,2}))?\}/g;
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'ash', 'busybox']);

/** A template split into argv once, with the tokens it uses. */
export interface CommandTemplate {
  args: string[];
  uses: Set<TokenName>;
  /** Indexes of arguments that are a shell script (after `sh -c`): their values are shell-quoted. */
  scripts: Set<number>;
}

export function parseTemplate(template: string): CommandTemplate {
  const args: string[] = [];
  for (const entry of parse(template, (key) => `$${key}`)) {
    if (typeof entry === 'string') args.push(entry);
    else if ('comment' in entry) break;
    else if (entry.op === 'glob') args.push(entry.pattern);
    else {
      throw new FarmError('RB_BAD_JOB', `command template uses the shell operator '${entry.op}' but runs without a shell: write "sh -c '...'" if it needs one (template: ${template})`);
    }
  }
  if (args.length === 0) throw new FarmError('RB_BAD_JOB', 'command template is empty');
  const uses = new Set<TokenName>();
  args.forEach((arg, i) => {
    for (const m of arg.matchAll(TOKEN_RE)) {
      const name = m[1] as TokenName;
      if (!TOKENS.includes(name)) {
        throw new FarmError('RB_BAD_JOB', `command template argument ${i} ('${arg}') names the unknown token {${m[1]}}; known: ${TOKENS.map((t) => `{${t}}`).join(' ')}`);
      }
      if (m[2] !== undefined && !['frame', 'first', 'last'].includes(name)) {
        throw new FarmError('RB_BAD_JOB', `command template: only {frame}, {first} and {last} take a width, not {${m[0].slice(1, -1)}}`);
      }
      uses.add(name);
    }
  });
  const scripts = new Set<number>();
  if (SHELLS.has(basename(args[0]!))) {
    const c = args.findIndex((a, i) => i > 0 && /^-[a-z]*c[a-z]*$/.test(a));
    if (c > 0 && c + 1 < args.length) scripts.add(c + 1);
  }
  return { args, uses, scripts };
}

function fill(t: CommandTemplate, values: Record<TokenName, string>): string[] {
  return t.args.map((arg, i) =>
    arg.replace(TOKEN_RE, (_all, name: TokenName, width: string | undefined) => {
      let v = values[name];
      if (width !== undefined) v = v.padStart(Number(width), '0');
      return t.scripts.has(i) ? quote([v]) : v;
    }),
  );
}

export function createCommandAdapter(): RenderAdapter {
  return {
    name: 'command',
    frameCheck: (task) => (task.resolution && task.command !== undefined && /\{(width|height)\}/.test(task.command) ? { size: task.resolution } : {}),
    plan(task: RenderTask): Invocation[] {
      if (!task.command) throw new FarmError('RB_BAD_JOB', "renderer 'command' needs a command template (the job's 'command' field)");
      if (task.frames.length === 0) throw new FarmError('RB_BAD_JOB', 'command: the task has no frames');
      const t = parseTemplate(task.command);
      // the job's own output patterns, compiled once for all of the task's processes
      const own = task.progress !== undefined || task.errors || task.sceneErrors ? { patterns: compileOutputPatterns(task) } : {};
      const { width, height } = task.resolution ?? DEFAULT_RESOLUTION;
      const first = task.frames[0]!;
      const last = task.frames[task.frames.length - 1]!;
      const cwd = dirname(task.scene);
      const base = {
        first: String(first),
        last: String(last),
        scene: task.scene,
        outdir: task.workDir,
        width: String(width),
        height: String(height),
      };
      const fileOf = (frame: number) => `${task.workDir}/${frameFileName(task.outputPattern, frame)}`;
      const tracked = t.uses.has('output') || t.uses.has('outdir');
      if (t.uses.has('frame') || t.uses.has('output')) {
        return task.frames.map((frame) => ({
          argv: fill(t, { ...base, frame: String(frame), output: fileOf(frame) }),
          cwd,
          frames: [frame],
          outputs: tracked ? [{ frame, file: fileOf(frame) }] : [],
          ...own,
        }));
      }
      return [
        {
          argv: fill(t, { ...base, frame: String(first), output: fileOf(first) }),
          cwd,
          frames: [...task.frames],
          outputs: tracked ? task.frames.map((frame) => ({ frame, file: fileOf(frame) })) : [],
          ...own,
        },
      ];
    },
    parser: (inv, onProgress) => new CommandParser(inv.frames, onProgress, inv.patterns),
  };
}

const PERCENT_RE = /(\d{1,3}(?:\.\d+)?)\s?%/;
const FRAME_RE = /\b(?:Fra:|frame[ :#]?)\s*(\d+)/i;

/**
 * Generic output reading: an `NN%` on a line is progress; `Fra:N` or `frame N` names the
 * frame in a whole-task run. The error text is the tail of stderr (else of stdout).
 *
 * A job that gives its own patterns (protocol/output-patterns.ts) is read by them: its `progress`
 * regex alone then gives progress and frames (without one the generic reading stays), its
 * `errors` lines are the error text, and a `sceneErrors` line makes a failure the scene's
 * (RB_SCENE_ERROR).
 */
export class CommandParser implements OutputParser {
  private readonly frames: readonly number[];
  private readonly onProgress: (p: Progress) => void;
  private readonly out: LineSplitter;
  private readonly err: LineSplitter;
  private readonly outTail = new LineTail(8);
  private readonly errTail = new LineTail(8);
  private readonly patterns: OutputPatterns | undefined;
  /** Lines the job's `errors` or `sceneErrors` matched: the first few, the cause is usually first. */
  private readonly errorLines: string[] = [];
  private sceneError: string | undefined;
  private frame: number;

  constructor(frames: readonly number[], onProgress: (p: Progress) => void, patterns?: OutputPatterns) {
    this.frames = frames;
    this.onProgress = onProgress;
    this.patterns = patterns;
    this.frame = frames[0]!;
    this.out = new LineSplitter((l) => this.line(l, this.outTail));
    this.err = new LineSplitter((l) => this.line(l, this.errTail));
  }

  push(stream: 'stdout' | 'stderr', text: string): void {
    (stream === 'stderr' ? this.err : this.out).push(text);
  }

  end(): void {
    this.out.end();
    this.err.end();
  }

  finishedFrames(): number[] {
    return []; // a generic command's output does not say when a frame's file is complete
  }

  errorText(): string {
    if (this.errorLines.length > 0) return this.errorLines.join('\n');
    return this.errTail.size > 0 ? this.errTail.text() : this.outTail.text();
  }

  diagnose(where: string): Diagnosis | undefined {
    if (this.sceneError === undefined) return undefined;
    return { code: 'RB_SCENE_ERROR', message: `${this.sceneError} (the job's sceneErrors matched on ${where}: the scene fails the same way on every host)` };
  }

  private line(line: string, tail: LineTail): void {
    tail.add(line);
    const p = this.patterns;
    if (p) this.errorLine(line, p);
    if (p?.progress) return this.patternedProgress(line, p.progress);
    if (this.frames.length > 1) {
      const f = FRAME_RE.exec(line);
      if (f && this.frames.includes(Number(f[1]))) this.frame = Number(f[1]);
    }
    const m = PERCENT_RE.exec(line);
    if (m) this.onProgress({ frame: this.frame, percent: Math.min(100, Number(m[1])) });
  }

  private errorLine(line: string, p: OutputPatterns): void {
    const scene = matchesAny(p.sceneErrors, line);
    if (scene) this.sceneError ??= line.trim();
    if ((scene || matchesAny(p.errors, line)) && this.errorLines.length < 8) this.errorLines.push(line.trim());
  }

  /** The job's progress regex replaces the generic reading: other percentages on other lines are not progress. */
  private patternedProgress(line: string, re: RegExp): void {
    const got = readProgress(re, line);
    if (!got) return;
    // a frame the task does not hold (a renderer counting from 0, say) is not ours to report
    if (got.frame !== undefined) {
      if (!this.frames.includes(got.frame)) return;
      this.frame = got.frame;
    }
    this.onProgress({ frame: this.frame, percent: got.percent });
  }
}
