import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { listAllHosts } from '../../actors/registry/index.ts';
import { codecs, PROTOCOL_MAJOR, streams, subjects } from '../../protocol/index.ts';
import type { FarmFacts, KnownJob } from './fuzz-messages.ts';

/*
 * The farm's state as the fuzzer compares it before and after: every job with every frame, every
 * host record and the journal's length, read through the farm's own requests. Values that change
 * on their own on an idle farm (heartbeat times, load, ETA) are left out.
 */

export interface FarmSnapshot {
  /** Each job with every frame, minus the ETA. */
  jobs: Record<string, unknown>;
  /** Each host record, minus what every heartbeat changes (lastSeenAt, load, slots' since). */
  hosts: Record<string, unknown>;
  /** The scheduler's journal stream, when JetStream answers. */
  journal?: { messages: number; lastSeq: number };
}

/** Reads the farm's state through its own requests (and the journal stream's counters). */
export async function snapshotFarm(nc: NatsConnection, site: string, timeoutMs = 2_000): Promise<FarmSnapshot> {
  const q = await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'jobs' }, codecs.queryReply, { timeoutMs });
  if (!('jobs' in q)) throw new Error('sched.query answered without jobs');
  const jobs: Record<string, unknown> = {};
  for (const j of q.jobs) {
    const d = await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId: j.jobId }, codecs.queryReply, { timeoutMs });
    if (!('job' in d)) throw new Error(`sched.query answered job ${j.jobId} without it`);
    const { etaMs: _eta, ...job } = d.job;
    jobs[j.jobId] = job;
  }
  const l = await listAllHosts(nc, site, { timeoutMs });
  const hosts: Record<string, unknown> = {};
  for (const h of l.hosts) {
    const { lastSeenAt: _seen, load: _load, ...rest } = h;
    hosts[h.host] = { ...rest, slots: h.slots.map(({ since: _since, ...s }) => s) };
  }
  const snap: FarmSnapshot = { jobs, hosts };
  try {
    const jsm = await jetstreamManager(nc, { timeout: timeoutMs });
    const info = await jsm.streams.info(streams.journal(site));
    snap.journal = { messages: info.state.messages, lastSeq: info.state.last_seq };
  } catch {
    // no JetStream or no journal yet: jobs and hosts still tell
  }
  return snap;
}

/** Where two snapshots differ, one line per changed value. */
export function diffSnapshots(a: FarmSnapshot, b: FarmSnapshot): string[] {
  const out: string[] = [];
  diff(a.jobs, b.jobs, 'jobs', out);
  diff(a.hosts, b.hosts, 'hosts', out);
  if (a.journal && b.journal) diff(a.journal, b.journal, 'journal', out);
  return out;
}

function diff(a: unknown, b: unknown, path: string, out: string[]): void {
  if (out.length >= 50) return;
  const isObj = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object';
  if (isObj(a) && isObj(b) && Array.isArray(a) === Array.isArray(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) diff(a[k], b[k], `${path}/${k}`, out);
    return;
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) out.push(`${path}: ${short(a)} → ${short(b)}`);
}

function short(v: unknown): string {
  const s = v === undefined ? '(absent)' : JSON.stringify(v);
  return s.length > 160 ? `${s.slice(0, 160)}…` : s;
}

export function factsFrom(site: string, host: string, snap: FarmSnapshot): FarmFacts {
  const jobs: KnownJob[] = Object.values(snap.jobs).map((raw) => {
    const j = raw as { jobId: string; state: string; frames: { taskIndex: number; attempt: number; state: string }[] };
    const tasks = new Map<number, { taskIndex: number; attempt: number; state: string }>();
    for (const f of j.frames) if (!tasks.has(f.taskIndex)) tasks.set(f.taskIndex, { taskIndex: f.taskIndex, attempt: f.attempt, state: f.state });
    return { jobId: j.jobId, state: j.state, finished: ['done', 'failed', 'cancelled'].includes(j.state), tasks: [...tasks.values()] };
  });
  const h = snap.hosts[host] as { slots?: unknown[] } | undefined;
  return { site, host, slotCount: h?.slots?.length ?? 1, jobs };
}
