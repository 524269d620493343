import { existsSync, readdirSync } from 'node:fs';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FarmError, newJobId } from '../../protocol/index.ts';
import { rootLogger } from '../../sites/logger.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { openFarm } from './farm-client.ts';
import { plural } from './format.ts';
import { checkGlobals, logFormatOf } from './global-options.ts';
import { buildJob } from './job-file.ts';
import { parseCount } from './option-values.ts';
import { currentUser } from './os-user.ts';
import { missingPrograms } from './prerequisites.ts';
import { followJob, reportOutcome, submitJob } from './submit.ts';

export const DEMO_SCENE = fileURLToPath(new URL('../demo/scene.pov', import.meta.url));
export const DEMO_FRAMES = '1-36';
export const DEMO_RESOLUTION = '320x240';
/** Frames per POV-Ray process: each start costs ~0.6 s (notes/renderers.md); 3 makes the demo ~1.5× faster. */
export const DEMO_CHUNK = '3';
/** Where the demo's frames are copied so they outlive its temporary farm. */
export const DEMO_OUTPUT = 'renderbus-demo-output';

export interface DemoOptions {
  slots?: string;
  keep?: boolean;
}

/**
 * `renderbus demo`: starts a farm in a temporary data directory (or --data), renders the
 * POV-Ray animation in tools/demo/ with the progress display, copies the frames to
 * ./renderbus-demo-output/, and stops the farm.
 */
export async function demoCommand(c: CommandContext<DemoOptions>): Promise<number> {
  const g = checkGlobals(c.globals);
  const slots = c.opts.slots !== undefined ? parseCount('--slots', c.opts.slots, { min: 1, max: 1024 }) : availableParallelism();
  const missing = missingPrograms(['povray', 'nats-server']);
  if (missing) throw new FarmError('RB_RENDERER_MISSING', `the demo cannot run: ${missing}`);
  if (!povrayIncludesPresent()) {
    throw new FarmError('RB_RENDERER_MISSING', "the demo cannot run: POV-Ray's include files (colors.inc...) are not installed: install with 'sudo apt-get install -y povray-includes' (or run 'npm run demo', which installs what is missing)");
  }
  if (!existsSync(DEMO_SCENE)) throw new FarmError('RB_BAD_JOB', `the demo scene ${DEMO_SCENE} is missing from this checkout`);

  const ownData = g.data === undefined;
  const dataDir = ownData ? await mkdtemp(join(tmpdir(), 'renderbus-demo-')) : resolve(g.data!);
  const log = rootLogger({ name: 'renderbus-demo', file: join(dataDir, 'logs', 'farm.log'), format: logFormatOf(g) });
  const err = c.io.stderr;
  err.write(`starting a farm with ${slots} slots in ${dataDir}\n`);

  const { startFarm } = await import('../../sites/site.ts');
  const farm = await startFarm({ dataDir, site: g.site, slots, port: -1, listen: '127.0.0.1', log });
  let code: number = ExitCode.Failed;
  try {
    const fc = await openFarm({ nats: farm.url, site: farm.site, data: dataDir }, 'renderbus-demo');
    try {
      const jobId = newJobId(Date.now());
      const { spec } = buildJob({
        args: [DEMO_SCENE],
        flags: { frames: DEMO_FRAMES, resolution: DEMO_RESOLUTION, chunk: DEMO_CHUNK, name: 'demo' },
        cwd: process.cwd(),
        defaults: { group: currentUser().group, outputRoot: farm.outputDir },
        jobId,
      });
      const sent = await submitJob(fc, spec, jobId);
      err.write(`rendering ${plural(sent.frames, 'frame')} of ${basename(DEMO_SCENE)} at ${DEMO_RESOLUTION} (job ${jobId}, ${plural(sent.tasks, 'task')})\n`);
      const outcome = await followJob(fc, jobId, c.io, err.isTTY ? 'bar' : 'lines', sent.frames);
      if (outcome === 'interrupted') {
        code = ExitCode.Interrupted;
      } else {
        reportOutcome(c.io, outcome);
        if (outcome.summary.state === 'done') {
          const dest = resolve(DEMO_OUTPUT);
          const copied = await copyFrames(outcome.summary.outputDir, dest);
          c.io.stdout.write(
            `${copied} frames are in ${dest}/ (copied from ${outcome.summary.outputDir}` +
              `${ownData && !c.opts.keep ? ', which goes away with the demo farm' : ''})\n`,
          );
          code = ExitCode.Ok;
        }
      }
    } finally {
      await fc.close();
    }
  } finally {
    err.write('stopping the farm\n');
    await farm.stop();
    log.flush();
    if (ownData && !c.opts.keep) await rm(dataDir, { recursive: true, force: true });
    else err.write(`farm data kept in ${dataDir} (logs in ${join(dataDir, 'logs', 'farm.log')})\n`);
  }
  return code;
}

/** POV-Ray's standard include files, where Debian's povray-includes (or a source install) puts them; the demo scene includes colors.inc. */
function povrayIncludesPresent(): boolean {
  for (const root of ['/usr/share', '/usr/local/share']) {
    const dirs = existsSync(root) ? readdirSync(root).filter((d) => d.startsWith('povray')) : [];
    if (dirs.some((d) => existsSync(join(root, d, 'include', 'colors.inc')))) return true;
  }
  return false;
}

/** Copies the finished frames (not hidden or temporary files) and returns how many. */
async function copyFrames(from: string, to: string): Promise<number> {
  const names = (await readdir(from)).filter((n) => !n.startsWith('.') && !n.endsWith('.tmp') && !n.endsWith('.pov-state'));
  await Promise.all(names.map((n) => cp(join(from, n), join(to, n), { force: true, recursive: true })));
  return names.length;
}
