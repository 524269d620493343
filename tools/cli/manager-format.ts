import type { HostRecord, HostTurn, JobSummary, SharesReply, SickHost, SlotInfo } from '../../protocol/index.ts';
import { ago, cut, dateTime, megabytes, table, type Paint } from './format.ts';

// The operator's manager views (`renderbus hosts`, `host <name>`, `queue`): pure functions from
// the registry's and the scheduler's answers to what is printed, so they are tested without a farm.

export type { HostTurn };

/** Sickness as the scheduler reports it; `null` when the scheduler did not answer. */
export type SickList = SickHost[] | null;

interface HostHealth {
  /** Sick: failed frames of several jobs and gets no work until `sickUntil`; null: unknown (no scheduler). */
  sick: boolean | null;
  sickUntil?: number;
  sickJobs?: string[];
}

/** A host the registry holds: its record, plus what `renderbus hosts --json` adds. */
export type UpHost = HostRecord &
  HostHealth & {
    state: 'up';
    draining: boolean;
    slotsBusy: number;
    /** Slots that may take work now: idle ones, none on a draining host. */
    slotsFree: number;
  };

/** A host the registry dropped (it stopped, or missed its heartbeats) and that has not come back. */
export type DownHost = HostHealth & {
  host: string;
  state: 'down';
  /** When the registry dropped it. */
  downAt: number;
  reason: string;
  serverId?: string;
};

export type HostView = UpHost | DownHost;

type SharesBody = Extract<SharesReply, { ok: true }>['body'];

function health(host: string, sick: SickList): HostHealth {
  if (sick === null) return { sick: null };
  const s = sick.find((x) => x.host === host);
  return s ? { sick: true, sickUntil: s.until, sickJobs: s.jobs } : { sick: false };
}

/**
 * Every render host: those in the registry are up; a host whose last event is `down` (or
 * `up` with no record since, e.g. the registry itself was lost) is down. Sorted by name.
 */
export function hostViews(records: HostRecord[], turns: HostTurn[], sick: SickList): HostView[] {
  const up = new Set(records.map((r) => r.host));
  const views: HostView[] = records.map((r) => {
    const draining = r.draining === true;
    return {
      ...r,
      state: 'up',
      draining,
      ...health(r.host, sick),
      slotsBusy: r.slots.filter((s) => s.state === 'busy').length,
      slotsFree: draining ? 0 : r.slots.filter((s) => s.state === 'idle').length,
    };
  });
  for (const t of lastTurns(turns)) {
    if (up.has(t.host)) continue;
    const reason = t.event === 'down' ? (t.reason ?? 'left the farm') : 'no longer in the registry';
    const down: DownHost = { host: t.host, state: 'down', downAt: t.at, reason, ...health(t.host, sick) };
    if (t.serverId !== undefined) down.serverId = t.serverId;
    views.push(down);
  }
  return views.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
}

/** The latest turn of each host (the list is in stream order, so a later one wins). */
function lastTurns(turns: HostTurn[]): HostTurn[] {
  const last = new Map<string, HostTurn>();
  for (const t of turns) last.set(t.host, t);
  return [...last.values()];
}

/** `up`, `up, draining`, `up, sick`, `down`: words first, colour on a terminal. */
export function hostStateText(h: HostView, p: Paint): string {
  if (h.state === 'down') return p.red('down');
  const parts = [p.green('up')];
  if (h.draining) parts.push(p.yellow('draining'));
  if (h.sick === true) parts.push(p.red('sick'));
  return parts.join(', ');
}

/** The `renderbus hosts` table, and a line under it saying what is unknown or down. */
export function describeHosts(views: HostView[], p: Paint, now = Date.now(), sickUnknown?: string): string {
  const rows = views.map((h) => {
    if (h.state === 'down') {
      return [h.host, hostStateText(h, p), '-', '-', '-', '-', '-', '-', `${ago(h.downAt, now)}: ${h.reason}`];
    }
    const inv = h.inventory;
    return [
      h.host,
      hostStateText(h, p),
      `${h.slotsBusy} busy / ${h.slotsFree} free`,
      h.load !== undefined ? h.load.toFixed(2) : '-',
      cut(`${inv.cpu.count}× ${inv.cpu.type}${inv.cpu.speedMhz ? ` ${Math.round(inv.cpu.speedMhz)} MHz` : ''}`, 40),
      megabytes(inv.ramMb),
      `${inv.os.type} ${inv.os.version}`,
      cut(inv.packages.map((pk) => `${pk.name} ${pk.version}${pk.includePath !== undefined && pk.includes === undefined ? ' (no includes)' : ''}`).join(', ') || '-', 40),
      ago(h.lastSeenAt, now),
    ];
  });
  let out = table(['HOST', 'STATE', 'SLOTS', 'LOAD', 'CPU', 'RAM', 'OS', 'PACKAGES', 'LAST SEEN'], rows);
  const sick = views.filter((h) => h.sick === true);
  for (const h of sick) out += `${h.host} is sick until ${dateTime(h.sickUntil)} (failed frames of ${(h.sickJobs ?? []).join(', ')}): renderbus sick ${h.host} --clear\n`;
  if (sickUnknown !== undefined) out += p.yellow(`sickness and hosts that left unknown: ${sickUnknown}`) + '\n';
  return out;
}

/** One slot of `renderbus host <name>`: index, state, task, job, frames, since when. */
function slotRow(s: SlotInfo, now: number): string[] {
  return [
    String(s.index),
    s.state,
    s.taskId ?? '-',
    s.jobId ?? '-',
    s.frames && s.frames.length > 0 ? framesText(s.frames) : '-',
    s.since !== undefined ? `${dateTime(s.since)} (${ago(s.since, now)})` : '-',
  ];
}

/** [1,2,3,7] → '1-3,7'. */
export function framesText(frames: number[]): string {
  const sorted = [...frames].sort((a, b) => a - b);
  const runs: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    runs.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return runs.join(',');
}

/** `renderbus host <name>`: the render manager's view of one host. */
export function describeHost(h: UpHost, p: Paint, now = Date.now(), sickUnknown?: string): string {
  const inv = h.inventory;
  const os = `${inv.os.family}/${inv.os.type} ${inv.os.version}${inv.os.distro ? ` (${inv.os.distro})` : ''}`;
  const cpu = `${inv.cpu.count}× ${inv.cpu.family}/${inv.cpu.type}${inv.cpu.speedMhz ? `, ${Math.round(inv.cpu.speedMhz)} MHz` : ''}`;
  let state = hostStateText(h, p);
  if (h.sick === true) state += ` until ${dateTime(h.sickUntil)} (failed frames of ${(h.sickJobs ?? []).join(', ')})`;
  if (h.sick === null) state += p.yellow(`; sickness unknown${sickUnknown !== undefined ? `: ${sickUnknown}` : ''}`);
  const lines: [string, string][] = [
    ['host', p.bold(h.host)],
    ['state', state],
    ['slots', `${h.slots.length}: ${h.slotsBusy} busy, ${h.slotsFree} free${h.draining ? ' (draining: takes no new work)' : ''}`],
    ['load', h.load !== undefined ? h.load.toFixed(2) : '-'],
    ['machine', `${inv.machine.family}/${inv.machine.type}`],
    ['os', os],
    ['cpu', cpu],
    ['ram', megabytes(inv.ramMb)],
    ['swap', megabytes(inv.swapMb)],
    ['licenses', inv.licenses.length > 0 ? inv.licenses.join(', ') : '-'],
    ['server', h.serverId],
    ['registered', `${dateTime(h.registeredAt)} (${ago(h.registeredAt, now)})`],
    ['last seen', ago(h.lastSeenAt, now)],
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  let out = `${lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`.trimEnd()).join('\n')}\n\n`;
  // INCLUDES: where a renderer's standard include files are (POV-Ray's colors.inc...), when the probe looked
  const includes = inv.packages.some((pk) => pk.includePath !== undefined);
  const includesOf = (pk: (typeof inv.packages)[number]) =>
    pk.includes ?? (pk.includePath !== undefined ? p.yellow(`missing (include path: ${pk.includePath.join(':') || 'none'})`) : '-');
  out += inv.packages.length === 0
    ? 'no rendering packages\n'
    : table(
      ['PACKAGE', 'VERSION', 'FAMILY', 'PATH', ...(includes ? ['INCLUDES'] : [])],
      inv.packages.map((pk) => [pk.name, pk.version, pk.family ?? '-', pk.path ?? '-', ...(includes ? [includesOf(pk)] : [])]),
    );
  // what a package said it renders with (Blender's probe): engines, and add-ons (those installed but off in renders marked)
  for (const pk of inv.packages) {
    if (pk.engines) out += `${pk.name} engines: ${pk.engines.join(', ') || 'none'}\n`;
    if (pk.addons) out += `${pk.name} add-ons: ${pk.addons.map((a) => (a.enabled ? a.name : `${a.name} (installed, off)`)).join(', ') || 'none'}\n`;
  }
  out += '\n';
  out += h.slots.length === 0 ? 'no slots\n' : table(['SLOT', 'STATE', 'TASK', 'JOB', 'FRAMES', 'SINCE'], h.slots.map((s) => slotRow(s, now)));
  return out;
}

/** An active job in the queue as `renderbus queue --json` prints it: its summary and its position (1 = next). */
export type QueueEntry = JobSummary & { position: number };

const ENDED = new Set(['done', 'failed', 'cancelled']);

/** The jobs that have not ended, numbered in the scheduler's queue order (it lists them first, in order). */
export function queueEntries(jobs: JobSummary[]): QueueEntry[] {
  return jobs.filter((j) => !ENDED.has(j.state)).map((j, i) => ({ ...j, position: i + 1 }));
}

/** Why a job waits, in words: `why.text`, else the older `waiting`. */
export function waitText(j: JobSummary): string {
  return j.why?.text ?? j.waiting ?? '';
}

/** `renderbus queue`: the projects' shares when fair share is on, then the queue in order. */
export function describeQueue(entries: QueueEntry[], shares: SharesBody | null, p: Paint, site: string): string {
  let out = '';
  if (shares?.enabled) {
    out += 'fair share is on: busy projects split the slots by weight\n';
    if (shares.projects.length > 0) {
      const rows = shares.projects.map((s) => [s.project, `${s.weight}${s.set ? '' : ' (default)'}`, s.share > 0 ? `${Math.round(s.share * 100)}%` : '-', String(s.running), String(s.queued)]);
      out += table(['PROJECT', 'WEIGHT', 'SHARE', 'SLOTS HELD', 'TASKS QUEUED'], rows);
    }
    out += '\n';
  }
  if (entries.length === 0) return `${out}the queue of site ${site} is empty (ended jobs: renderbus jobs)\n`;
  const rows = entries.map((j) => [
    String(j.position),
    j.jobId,
    cut(j.name, 30),
    cut(j.project, 20),
    String(j.priority),
    queueState(j.state, p),
    String(j.counts.queued),
    String(j.counts.running),
    `${j.counts.done}/${j.counts.total}${j.counts.failed > 0 ? p.red(` (${j.counts.failed} failed)`) : ''}`,
    waitText(j) ? p.yellow(waitText(j)) : '',
  ]);
  return out + table(['#', 'JOB', 'NAME', 'PROJECT', 'PRI', 'STATE', 'QUEUED', 'RUNNING', 'DONE', 'WAITING'], rows);
}

function queueState(state: string, p: Paint): string {
  if (state === 'rendering') return p.cyan(state);
  if (state === 'held' || state === 'paused') return p.yellow(state);
  return state;
}
