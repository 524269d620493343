import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import { FarmError, PROTOCOL_MAJOR, codecs, newJobId, type JobSpec } from '../../protocol/index.ts';
import { isOpenJdDocument, parseTemplateText, templateToJobs, type TemplateJobs } from '../../protocol/openjd/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, ctlSubject, openFarm, type FarmClient } from './farm-client.ts';
import { json, plural } from './format.ts';
import { checkGlobals, dataDirOf } from './global-options.ts';
import { currentUser } from './os-user.ts';
import { readFarmFile } from '../../sites/farm-file.ts';
import { buildJobFrom } from './job-file.ts';
import { followJob, reportOutcome, submitJob, type SubmitOptions } from './submit.ts';

/**
 * `renderbus submit job.yaml [--param Name=Value ...]`: an Open Job Description job template
 * (protocol/openjd/) submitted as one job per step, all or none: the jobs are queued held, in
 * the order of their dependencies, and released only once every one was accepted; a refusal
 * cancels those already queued (nothing of them ran). docs/renderers.md, "Open Job Description templates".
 */

/** Flags a template says itself (in its steps), refused rather than half applied. */
const TEMPLATE_SAYS: ReadonlyArray<[keyof SubmitOptions, string]> = [
  ['frames', "the frames are the steps' task parameters (give the range as a job parameter: --param Frames=1-100)"],
  ['renderer', "each step runs its own command (renderer 'command')"],
  ['command', "each step's command is its script's onRun action"],
  ['chunk', "chunks are a CHUNK[INT] task parameter's chunks.defaultTaskCount"],
  ['taskDuration', "a CHUNK[INT] task parameter's chunks.targetRuntimeSeconds sets it"],
  ['env', 'variables are set by jobEnvironments and stepEnvironments'],
  ['after', "the steps' dependencies say what waits for what"],
  ['afterFrames', "the steps' dependencies say what waits for what"],
  ['name', "the template's name names the jobs"],
  ['pattern', "a step's command writes its own files, named as it chooses"],
];

/** Whether the file on the command line is an OpenJD template: YAML, or JSON with specificationVersion. */
export function isTemplateArg(args: readonly string[], cwd: string): boolean {
  const first = args[0];
  if (first === undefined) return false;
  const ext = extname(first).toLowerCase();
  if (ext === '.yaml' || ext === '.yml') return true;
  if (ext !== '.json') return false;
  try {
    return isOpenJdDocument(JSON.parse(readFileSync(resolve(cwd, first), 'utf8')));
  } catch {
    return false; // the job file's own checks say what is wrong with it
  }
}

/** Reads, checks and maps a template; every problem as a UsageError naming the file and the field. */
export function readTemplate(file: string, cwd: string, params: readonly string[], filesDir: string): { path: string; mapped: TemplateJobs } {
  const path = resolve(cwd, file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`template ${file}: ${code === 'ENOENT' ? 'does not exist' : `cannot read it (${(err as Error).message})`}`, { cause: err });
  }
  const overrides = new Map<string, string>();
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`--param: '${p}' is not NAME=VALUE (e.g. --param Frames=1-24)`);
    const name = p.slice(0, eq);
    if (overrides.has(name)) throw new UsageError(`--param: ${name} is given twice`);
    overrides.set(name, p.slice(eq + 1));
  }
  try {
    const doc = parseTemplateText(text);
    return { path, mapped: templateToJobs(doc, { overrides, templateDir: dirname(path), cwd, filesDir }) };
  } catch (err) {
    if (err instanceof FarmError && err.code === 'RB_BAD_TEMPLATE') throw new UsageError(`template ${file}: ${err.message}`, { cause: err });
    throw err;
  }
}

export async function submitTemplateCommand(c: CommandContext<SubmitOptions>): Promise<number> {
  const globals = checkGlobals(c.globals);
  const dataDir = dataDirOf(globals);
  const farmFile = await readFarmFile(dataDir).catch(() => null);
  const g = { outputRoot: farmFile?.outputDir ?? join(dataDir, 'output'), group: currentUser().group };
  const [file, extra] = c.args;
  if (file === undefined) throw new UsageError('give the template file');
  if (extra !== undefined) throw new UsageError(`'${extra}': a template takes no scene argument (its parameters give its files: --param Name=Value)`);
  const refused = TEMPLATE_SAYS.filter(([key]) => c.opts[key] !== undefined);
  if (refused.length > 0) {
    throw new UsageError(refused.map(([key, why]) => `--${key.replace(/[A-Z]/g, (x) => `-${x.toLowerCase()}`)}: not for a template: ${why}`).join('\n  '));
  }
  const cwd = process.cwd();
  const firstId = newJobId(Date.now());
  // embedded files go where render hosts see them: beside the jobs' output folders
  const filesDir = join(c.opts.output !== undefined ? resolve(cwd, c.opts.output) : g.outputRoot, `openjd-${firstId}`);
  const { path, mapped } = readTemplate(file, cwd, c.opts.param ?? [], filesDir);
  const ids = mapped.jobs.map((_, i) => (i === 0 ? firstId : newJobId(Date.now())));

  const specs: JobSpec[] = [];
  try {
    // a job environment's files are every step's: written once
    for (const f of new Map(mapped.jobs.flatMap((j) => j.files).map((x) => [x.path, x])).values()) {
      mkdirSync(dirname(f.path), { recursive: true });
      writeFileSync(f.path, f.data);
      chmodSync(f.path, f.runnable ? 0o755 : 0o644);
    }
    mapped.jobs.forEach((j, i) => {
      const raw: Record<string, unknown> = { ...j.spec, scene: path };
      if (j.after.length > 0) raw.after = j.after.map((a) => ids[a]!);
      const { spec } = buildJobFrom(raw, { flags: c.opts, cwd, defaults: { group: g.group, outputRoot: g.outputRoot }, jobId: ids[i]! }, { source: `template ${file}, step '${j.step}'` });
      // held until every step is queued: a step refused later leaves nothing that ran
      if (c.opts.hold || mapped.jobs.length > 1) spec.hold = true;
      if (c.opts.previewFirst) spec.previewFirst = true;
      if (c.opts.chain) spec.chain = true;
      if (c.opts.split) spec.split = true;
      specs.push(spec);
    });
  } catch (err) {
    rmSync(filesDir, { recursive: true, force: true });
    throw err;
  }

  const fc = await openFarm(globals, 'renderbus-submit');
  try {
    const sent: { jobId: string; frames: number; tasks: number }[] = [];
    try {
      for (let i = 0; i < specs.length; i++) sent.push(await submitJob(fc, specs[i]!, ids[i]!));
    } catch (err) {
      const left = await undo(fc, sent.map((s) => s.jobId));
      rmSync(filesDir, { recursive: true, force: true });
      const step = mapped.jobs[sent.length]!.step;
      const cancelled = sent.map((x) => x.jobId).filter((id) => !left.includes(id));
      const note = [
        cancelled.length > 0 ? `; the ${plural(cancelled.length, 'job')} queued before it (${cancelled.join(', ')}) ${cancelled.length === 1 ? 'was' : 'were'} cancelled while held: nothing ran` : '',
        left.length > 0 ? `; could not cancel ${left.join(', ')}: renderbus cancel them` : '',
      ].join('');
      throw new FarmError(err instanceof FarmError ? err.code : 'RB_BAD_TEMPLATE', `step '${step}': ${(err as Error).message}${note}`, { cause: err });
    }
    if (!c.opts.hold && specs.length > 1) {
      for (const s of sent) {
        try {
          await ask(fc, 'scheduler', ctlSubject(fc), codecs.ctlRequest, { v: PROTOCOL_MAJOR, action: 'release', jobId: s.jobId }, codecs.ctlReply);
        } catch (err) {
          const held = sent.slice(sent.indexOf(s)).map((x) => x.jobId);
          throw new FarmError(err instanceof FarmError ? err.code : 'RB_SCHEDULER_UNAVAILABLE', `the jobs were queued but ${held.join(', ')} stay held: renderbus release them (${(err as Error).message})`, { cause: err });
        }
      }
    }
    const rows = mapped.jobs.map((j, i) => ({ jobId: ids[i]!, step: j.step, frames: sent[i]!.frames, tasks: sent[i]!.tasks, outputDir: specs[i]!.output?.dir ?? '', after: j.after.map((a) => ids[a]!) }));
    if (c.opts.json && !c.opts.wait) {
      c.io.stdout.write(json({ name: mapped.name, site: fc.site, filesDir, jobs: rows }));
      return ExitCode.Ok;
    }
    if (!c.opts.json) {
      c.io.stdout.write(rows.map((r) => `${r.jobId}\n`).join('')); // alone on stdout, one a line, so scripts can capture them
      c.io.stderr.write(`submitted template '${mapped.name}' to site ${fc.site} as ${plural(rows.length, 'job')}${c.opts.hold ? ' (held: renderbus release <id>)' : ''}:\n`);
      for (const r of rows) {
        const after = r.after.length > 0 ? `, after ${r.after.join(', ')}` : '';
        c.io.stderr.write(`  ${r.jobId} ${r.step}: ${plural(r.frames, 'frame')} in ${plural(r.tasks, 'task')}${after}\n`);
      }
    }
    if (!c.opts.wait) return ExitCode.Ok;
    // followed in dependency order: a job that does not end done leaves those after it waiting
    for (const r of rows) {
      const outcome = await followJob(fc, r.jobId, c.io, c.opts.json ? 'none' : c.io.stderr.isTTY ? 'bar' : 'lines', r.frames);
      if (outcome === 'interrupted') return ExitCode.Interrupted;
      if (!c.opts.json) reportOutcome(c.io, outcome);
      if (outcome.summary.state !== 'done') {
        if (c.opts.json) c.io.stdout.write(json({ name: mapped.name, site: fc.site, jobs: rows, failed: r.jobId, state: outcome.summary.state, failures: outcome.failures }));
        return ExitCode.Failed;
      }
    }
    if (c.opts.json) c.io.stdout.write(json({ name: mapped.name, site: fc.site, jobs: rows, state: 'done' }));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}

/** Cancels the jobs already queued (held, so nothing ran); the ids it could not cancel. */
async function undo(fc: FarmClient, jobIds: string[]): Promise<string[]> {
  const left: string[] = [];
  for (const jobId of jobIds) {
    try {
      await ask(fc, 'scheduler', ctlSubject(fc), codecs.ctlRequest, { v: PROTOCOL_MAJOR, action: 'cancel', jobId }, codecs.ctlReply);
    } catch {
      left.push(jobId);
    }
  }
  return left;
}

