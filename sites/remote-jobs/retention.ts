import { lstat, rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import { FarmError } from '../../protocol/index.ts';
import { PeerCas } from '../cas/index.ts';
import { bundleIdFor } from './outbox.ts';
import { remoteJobPaths } from './path-map.ts';
import type { RemoteJobRecord, RemoteJobRecords } from './records.ts';

/** How long a peer's job's inputs are kept once it ended, unless `renderbus up --keep-inputs` says otherwise. */
export const DEFAULT_KEEP_INPUTS_MS = 7 * 24 * 3_600_000;
/**
 * Blobs no job references are removed once unused this long at least, however short the
 * retention: a blob a link has just put in a want-list (its mtime renewed) must outlive the
 * transfer that references it.
 */
export const MIN_GC_AGE_MS = 3_600_000;

const UNITS: Record<string, number> = { w: 7 * 86_400_000, d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 };
const DURATION = /^(?:\d+[wdhms])+$/;
export const DURATION_FORMS = "a whole number and a unit: '7d', '36h', '90m', '30s', '2w', or parts together: '1d12h'";

/** `--keep-inputs 7d`: a duration in ms; anything else is refused naming the forms accepted. */
export function parseKeepDuration(text: string): number {
  const src = String(text).trim().toLowerCase();
  if (!DURATION.test(src)) throw new FarmError('RB_BAD_ARGUMENT', `'${String(text).slice(0, 40)}' is not a duration: write ${DURATION_FORMS}`);
  let ms = 0;
  for (const [, n, unit] of src.matchAll(/(\d+)([wdhms])/g)) ms += Number(n) * UNITS[unit!]!;
  if (!Number.isSafeInteger(ms) || ms > 10 * 365 * 86_400_000) throw new FarmError('RB_BAD_ARGUMENT', `'${src}' is longer than ten years`);
  return ms;
}

/** A duration as a person reads it: '7 days', '36 hours', '90 seconds'. */
export function formatKeep(ms: number): string {
  for (const [unit, size] of [['day', UNITS.d!], ['hour', UNITS.h!], ['minute', UNITS.m!], ['second', UNITS.s!]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${unit}${ms === size ? '' : 's'}`;
  }
  return `${ms} ms`;
}

/** Why a job's inputs are no longer here, as the re-render refusal says it. */
export function inputsGoneReason(originJob: string, gone: NonNullable<RemoteJobRecord['inputsGone']>): string {
  return `inputs of ${originJob} were removed on ${new Date(gone.at).toISOString().slice(0, 16).replace('T', ' ')} UTC after ${formatKeep(gone.keptMs)}`;
}

/** What the sweep knows of one record. */
export interface SweepFacts {
  rec: RemoteJobRecord;
  /** When it ended here (its bill was sent), or undefined while it runs. */
  endedAt: number | undefined;
  /** Its folder under `<data>/fed/jobs/` or its CAS reference is still there. */
  leftovers: boolean;
  /** Re-renders of it: each one's end, undefined while it runs (or is being taken in). */
  rerenders: (number | undefined)[];
}

export type SweepChoice =
  | { do: 'none' }
  | { do: 'keep'; until?: number }
  | { do: 'remove' }
  /** marked gone by a sweep that was stopped before it removed everything */
  | { do: 'finish' };

/**
 * What the sweep does with one peer's job (pure). Its inputs are kept `keepMs` after it ended,
 * or after the last re-render of it ended, and never while a re-render of it runs. A job marked
 * gone whose files are still there was left half removed: finish it.
 */
export function sweepChoice(f: SweepFacts, keepMs: number, now: number): SweepChoice {
  if (f.rec.inputsGone) return f.leftovers ? { do: 'finish' } : { do: 'none' };
  if (f.rec.state === 'rejected') return f.leftovers ? { do: 'remove' } : { do: 'none' };
  if (f.endedAt === undefined || f.rerenders.some((r) => r === undefined)) return { do: 'keep' };
  const from = Math.max(f.endedAt, ...(f.rerenders as number[]));
  return now - from >= keepMs ? { do: 'remove' } : { do: 'keep', until: from + keepMs };
}

export interface SweepOptions {
  site: string;
  dataDir: string;
  records: RemoteJobRecords;
  keepMs: number;
  log: Logger;
  now?: number;
}

export interface SweepResult {
  removed: string[];
  kept: number;
  blobsRemoved: number;
  bytesFreed: number;
}

const exists = (p: string) => lstat(p).then(() => true, () => false);

/**
 * One retention sweep: each ended job whose time is up loses its tree (inputs, outputs already
 * sent, samples) and its CAS reference, then each touched peer's store collects the blobs no
 * job references. The record stays, marked `inputsGone` with the date, so a re-render of it is
 * refused by name. The record is marked first: a sweep killed half way leaves a job marked gone
 * whose files the next sweep finishes removing, never a tree half gone that still looks kept.
 */
export async function sweepRemoteJobs(o: SweepOptions): Promise<SweepResult> {
  const now = o.now ?? Date.now();
  const all = o.records.all();
  const ends = new Map<RemoteJobRecord, number | undefined>();
  for (const rec of all) ends.set(rec, await o.records.sentAt(rec, bundleIdFor(o.site, rec.originJob, 'bill')));
  const cases = new Map<string, PeerCas>();
  const casOf = async (peer: string) => {
    let c = cases.get(peer);
    if (!c) cases.set(peer, (c = await PeerCas.open(o.dataDir, peer)));
    return c;
  };
  const result: SweepResult = { removed: [], kept: 0, blobsRemoved: 0, bytesFreed: 0 };
  for (const rec of all) {
    const key = `${rec.peer}/${rec.originJob}`;
    const paths = remoteJobPaths(o.dataDir, rec.peer, rec.originJob);
    const cas = await casOf(rec.peer);
    const ref = `job-${rec.originJob}`;
    const leftovers = (await exists(paths.dir)) || (await cas.refs()).includes(ref);
    const rerenders = all.filter((r) => r.peer === rec.peer && r.rerenderOf === rec.originJob && r.state === 'accepted').map((r) => (r.inputsGone ? r.inputsGone.at : ends.get(r)));
    const choice = sweepChoice({ rec, endedAt: ends.get(rec), leftovers, rerenders }, o.keepMs, now);
    if (choice.do === 'keep' || choice.do === 'none') {
      if (choice.do === 'keep') result.kept++;
      continue;
    }
    if (choice.do === 'remove' && rec.state === 'accepted') await o.records.put({ ...rec, inputsGone: { at: now, keptMs: o.keepMs } });
    o.log.debug({ peer: rec.peer, originJob: rec.originJob, finishing: choice.do === 'finish' }, 'removing a peer job\'s kept inputs');
    await cas.removeRef(ref);
    await rm(paths.dir, { recursive: true, force: true });
    result.removed.push(key);
    o.log.info({ peer: rec.peer, originJob: rec.originJob, jobId: rec.jobId, keptMs: o.keepMs, finished: choice.do === 'finish' }, 'removed a peer job\'s kept inputs');
  }
  // every peer's store, not only those touched now: a sweep killed after dropping references
  // and before its gc leaves blobs that only a later gc takes
  for (const cas of cases.values()) {
    const gc = await cas.gc(Math.max(o.keepMs, MIN_GC_AGE_MS), { now });
    result.blobsRemoved += gc.removed;
    result.bytesFreed += gc.bytesFreed;
  }
  return result;
}
