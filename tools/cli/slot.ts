import { FarmError, type LiveStats, type SlotInfo } from '../../protocol/index.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { askAllHosts, openFarm } from './farm-client.ts';
import { ago, dateTime, json } from './format.ts';
import { killTask, liveText, nextLiveStats, parseSlotRef } from './frame.ts';

/** The slot as text: its state, task, job, frames, since when, and its process's figures. */
export function describeSlot(host: string, s: SlotInfo, live: LiveStats | null, now = Date.now()): string {
  const lines: [string, string][] = [
    ['slot', `${host}/${s.index}`],
    ['state', s.state],
  ];
  if (s.taskId) lines.push(['task', s.taskId]);
  if (s.jobId) lines.push(['job', s.jobId]);
  if (s.frames && s.frames.length > 0) lines.push(['frames', s.frames.join(',')]);
  if (s.since !== undefined) lines.push(['since', `${dateTime(s.since)} (${ago(s.since, now)})`]);
  if (live) lines.push(['process', liveText(live)]);
  else if (s.state === 'busy') lines.push(['process', 'no figures yet (they come every ~2 s)']);
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n';
}

/**
 * `renderbus slot <host>/<n>`: the slot as the registry has it (state, task, job, frames, since)
 * and the live figures of the process it runs; `--kill` kills its running task.
 */
export async function slotCommand(c: CommandContext<{ kill?: boolean; json?: boolean }>): Promise<number> {
  const { host, slot } = parseSlotRef(c.args[0] ?? '');
  const fc = await openFarm(c.globals, 'renderbus-slot');
  try {
    const { hosts } = await askAllHosts(fc);
    const h = hosts.find((x) => x.host === host);
    if (!h) throw new FarmError('RB_UNKNOWN_HOST', `no render host '${host}' on site ${fc.site} (hosts up: ${hosts.map((x) => x.host).join(', ') || 'none'})`);
    const s = h.slots.find((x) => x.index === slot);
    if (!s) throw new FarmError('RB_NO_SUCH_SLOT', `host ${host} has no slot ${slot} (it has ${h.slots.length}: 0-${h.slots.length - 1})`);
    if (c.opts.kill) {
      if (s.state !== 'busy' || !s.taskId) throw new FarmError('RB_NO_SUCH_SLOT', `slot ${host}/${slot} runs nothing (it is ${s.state})`);
      // the registry's record has no attempt: the render server kills whatever attempt of the task it runs
      await killTask(fc, host, s.taskId);
      c.io.stdout.write(c.opts.json ? json({ killed: true, host, slot, taskId: s.taskId }) : `killed task ${s.taskId} in ${host}/${slot}; the scheduler retries its frames like a failure\n`);
      return ExitCode.Ok;
    }
    const frame = s.frames?.[0];
    const live = s.state === 'busy' && s.jobId && frame !== undefined ? await nextLiveStats(fc, s.jobId, frame, 3_000) : null;
    c.io.stdout.write(c.opts.json ? json({ host, ...s, live }) : describeSlot(host, s, live));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}
