import { performance } from 'node:perf_hooks';
import { jetstreamManager } from '@nats-io/jetstream';
import { NoRespondersError, type NatsConnection } from '@nats-io/transport-node';
import {
  catalog, codecFor, codecs, decodeAny, encodeAny, ErrorCodes, MAX_PAYLOAD, PROTOCOL_MAJOR, Role, streams, subjects,
  type Codec, type Principal, type SubjectEntry,
} from '../../protocol/index.ts';
import { accepts, backtrackingProbe, makeCase, malformed, reason, setPath, type CaseSource, type Family, type FuzzCase } from './fuzz-cases.ts';
import { baseMessages, exampleFor, patternFields, semanticCases, type FarmFacts } from './fuzz-messages.ts';
import { caseRng, randomSeed } from './fuzz-prng.ts';
import { OPERATOR_TWINS, senderFor, subjectMatches, type SenderNames } from './fuzz-senders.ts';
import { diffSnapshots, factsFrom, snapshotFarm, type FarmSnapshot } from './fuzz-state.ts';

export { diffSnapshots, snapshotFarm, type FarmSnapshot } from './fuzz-state.ts';
export type { Family } from './fuzz-cases.ts';

/**
 * A fuzzer for every request subject of a running farm (issue 3, "Bad input and hostile peers").
 * It needs only a NATS connection and the site: it reads protocol/catalog.ts, so a request
 * subject added there is fuzzed without touching this file. Each request must be answered in
 * time with an error envelope that names the problem (an RB_ code and a message), or, for a
 * well-formed request about something unknown or already settled, with an ok the protocol allows;
 * and the farm's state (jobs, hosts, journal) must be the same afterwards.
 *
 * Case families: random bytes, random MessagePack values, a valid message with one field broken,
 * another protocol major, payloads at the size limit, hand-made cases (unknown job/host/task ids,
 * duplicated, stale and out-of-order results, bad patterns), patterns that backtrack, and
 * malformed events on the subjects the actors listen to. Only messages the local codec refuses
 * are sent, apart from the hand-made cases, which are chosen to change nothing.
 *
 * The bus is authenticated: each subject is sent on as the role that owns it, with its identity
 * token (tools/chaos/fuzz-senders.ts), so that the server delivers it and what is tested is the
 * actor's own validation. The operators' twins of owners' requests (`op.ctl` beside `sched.ctl`)
 * are fuzzed too.
 */

export interface FuzzOptions {
  /** The fuzzer's reader: an operator's connection (it reads the farm's state and follows its events). */
  nc: NatsConnection;
  /** A connection to the farm's bus as a principal of its site: the fuzzer sends as several (fuzzPrincipals) and closes them when done. */
  connectAs: (p: Principal) => Promise<NatsConnection>;
  /**
   * The artist and operator the fuzzer sends as (default 'fuzz'); the farm's jobs should be this
   * user's, so that steering them gets past the owner's check to the checks behind it.
   */
  user?: string;
  site: string;
  /** The render server whose `host.<host>.*` subjects are fuzzed. */
  host: string;
  /** Cases per request subject (the hand-made cases first, then the families in turn). */
  cases: number;
  /** Replays a run; a random one when absent (the report says which). */
  seed?: number;
  /** Progress lines. */
  log?: (line: string) => void;
  /** How long a request may wait for its reply (default 2000 ms). */
  timeoutMs?: number;
  /** Requests in flight at once (default 8). */
  concurrency?: number;
  /** A reply slower than this is a finding (default: none slower than the timeout; backtracking probes have their own). */
  slowMs?: number;
  /**
   * The farm is idle apart from the fuzzer (default true): then any event it publishes while
   * fuzzed is a finding, since a refused request must change nothing.
   */
  quiet?: boolean;
  /** Also publish malformed events on the event subjects the actors listen to (default true). */
  events?: boolean;
  /** Probe patterns in the schemas that backtrack (default true). */
  backtracking?: boolean;
  /** Probe that the client refuses over-limit payloads (default true). */
  clientLimit?: boolean;
  /** Run only these cases (from a report's findings), e.g. to replay one. */
  only?: { subject: string; index: number }[];
  /** Cases to leave out (counted as excluded), e.g. ones a known bug makes fail. */
  exclude?: (c: CaseInfo) => boolean;
}

/** What a case is, for FuzzOptions.exclude. */
export interface CaseInfo {
  subject: string;
  family: Family;
  label: string;
}

export type FindingKind =
  | 'no-reply' | 'no-responder' | 'bad-reply' | 'not-refused' | 'wrong-code' | 'bad-code' | 'handler-threw'
  | 'bad-answer' | 'slow' | 'client-limit' | 'state-changed' | 'events' | 'actor-down' | 'not-covered';

export interface Finding {
  kind: FindingKind;
  /** The subject template from the catalog, e.g. rb.<site>.sched.submit. */
  subject: string;
  /** Case number within the subject: with the seed, enough to replay it (FuzzOptions.only). */
  index?: number;
  family?: Family;
  label?: string;
  problem: string;
  /** What was sent, shortened. */
  request?: string;
  requestBytes?: number;
  reply?: string;
}

export interface SubjectStats {
  subject: string;
  schema: string;
  sent: number;
  /** Answered `ok: false`. */
  refused: number;
  /** Answered `ok: true` (well-formed cases about unknown or settled things). */
  answeredOk: number;
  noReply: number;
  /** Not sent: the generator could not make a message the codec refuses. */
  skipped: number;
  /** Not sent: FuzzOptions.exclude left them out. */
  excluded: number;
  /** Over-limit payloads the client refused to send (as it must). */
  clientRefused: number;
  families: Record<string, number>;
  codes: Record<string, number>;
  /** Hand-made cases answered ok, by label. */
  okLabels: Record<string, number>;
  maxLatencyMs: number;
}

export interface FuzzReport {
  seed: number;
  cases: number;
  durationMs: number;
  subjects: SubjectStats[];
  /** Malformed events published, by subject template. */
  eventsPublished: Record<string, number>;
  findings: Finding[];
  /** Findings beyond the first MAX_FINDINGS, not kept. */
  findingsDropped: number;
  stateChanged: boolean;
  stateDiff: string[];
  /** Events the farm published while fuzzed (its own), by subject. */
  eventsSeen: Record<string, number>;
  /** The slowest replies. */
  slowest: { subject: string; index: number; label: string; ms: number }[];
  notes: string[];
}

const MAX_FINDINGS = 200;
const MAX_NOTES = 100;

interface Target extends CaseSource {
  entry: SubjectEntry;
  /** The subject filled in for this farm, with the sender's identity token. */
  subject: string;
  /** Who sends on it. */
  as: Principal;
  /** The sender's connection (opened before the first case). */
  nc: NatsConnection;
  reply: Codec<unknown>;
  stats: SubjectStats;
}

/** Runs the fuzzer against a running farm and reports what it found. */
export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const started = performance.now();
  const seed = (o.seed ?? randomSeed()) >>> 0;
  const log = o.log ?? (() => {});
  const timeoutMs = o.timeoutMs ?? 2_000;
  const slowMs = o.slowMs ?? Infinity;
  const quiet = o.quiet ?? true;
  const { nc, site, host } = o;
  const names: SenderNames = { site, host, user: o.user ?? 'fuzz' };
  // one connection per principal the fuzzer sends as
  const conns = new Map<string, Promise<NatsConnection>>();
  const connFor = (p: Principal): Promise<NatsConnection> => {
    const key = `${p.role}/${p.name}`;
    let c = conns.get(key);
    if (!c) {
      c = o.connectAs(p);
      conns.set(key, c);
    }
    return c;
  };
  const report: FuzzReport = {
    seed, cases: o.cases, durationMs: 0, subjects: [], eventsPublished: {}, findings: [], findingsDropped: 0,
    stateChanged: false, stateDiff: [], eventsSeen: {}, slowest: [], notes: [],
  };
  const find = (f: Finding) => {
    if (report.findings.length < MAX_FINDINGS) report.findings.push(f);
    else report.findingsDropped++;
  };
  const note = (line: string) => {
    if (report.notes.length < MAX_NOTES && !report.notes.includes(line)) report.notes.push(line);
  };
  const limit = Math.min(MAX_PAYLOAD, nc.info?.max_payload ?? MAX_PAYLOAD);
  if (limit !== MAX_PAYLOAD) note(`the server's max_payload is ${limit}, the protocol's limit ${MAX_PAYLOAD}`);

  /**
   * The farm's state: jobs and hosts through the reader, the journal's counters through a
   * scheduler's credential (only the scheduler's role may use the JetStream API).
   */
  const snapshot = async (): Promise<FarmSnapshot> => {
    const snap = await snapshotFarm(nc, site, timeoutMs);
    try {
      const jsm = await jetstreamManager(await connFor({ role: Role.Scheduler, name: names.user }), { timeout: timeoutMs });
      const info = await jsm.streams.info(streams.journal(site));
      snap.journal = { messages: info.state.messages, lastSeq: info.state.last_seq };
    } catch (err) {
      note(`the journal's counters could not be read, so the state check leaves them out: ${(err as Error).message}`);
    }
    return snap;
  };
  const before = await snapshot();
  const facts = factsFrom(site, host, before);
  if (!before.hosts[host]) note(`render server '${host}' is not in the registry: slots assumed 1`);
  log(`fuzz: seed ${seed}, ${o.cases} cases per request subject, ${facts.jobs.length} job(s), host ${host} with ${facts.slotCount} slot(s)`);

  const targets: Target[] = [];
  for (const t of requestTargets(names, facts, note, find)) targets.push({ ...t, nc: await connFor(t.as) });
  const only = o.only ? new Map(o.only.map((x) => [`${x.subject}#${x.index}`, true])) : null;

  // Everything the farm publishes while fuzzed: with a quiet farm, nothing should be.
  const seen = new Map<string, number>();
  const published = new Map<string, number>();
  const watch = nc.subscribe(subjects.allEvents(site), { callback: (_e, m) => void seen.set(m.subject, (seen.get(m.subject) ?? 0) + 1) });
  try {
    // requests, round robin over the subjects so every actor is busy at once
    const work: (() => Promise<void>)[] = [];
    for (let i = 0; i < o.cases; i++) {
      for (const t of targets) {
        if (only && !only.has(`${t.entry.subject}#${i}`)) continue;
        work.push(() => runCase(t, i));
      }
    }
    await pool(work, o.concurrency ?? 8);
    log(`fuzz: ${work.length} requests sent`);

    // over-limit payloads: the client must refuse them, and the connection must survive
    if ((o.clientLimit ?? true) && !only) for (const t of targets) await clientLimit(t);

    if ((o.backtracking ?? true) && !only) await backtracking(targets);
    if ((o.events ?? true) && !only) await fuzzEvents();

    // deferred effects (a scheduler reports a result after answering it) land within a moment
    await nc.flush();
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    watch.unsubscribe();
  }
  await liveness();
  for (const [s, n] of seen) {
    const own = published.get(s) ?? 0;
    if (n > own) report.eventsSeen[s] = n - own;
  }
  if (quiet && Object.keys(report.eventsSeen).length > 0) {
    find({ kind: 'events', subject: 'rb.<site>.evt.>', problem: `the farm published events while only refused or settled requests came in: ${JSON.stringify(report.eventsSeen)}` });
  }

  try {
    const after = await snapshot();
    report.stateDiff = diffSnapshots(before, after);
  } catch (err) {
    report.stateDiff = [`could not read the farm's state afterwards: ${(err as Error).message}`];
  }
  for (const c of conns.values()) await (await c).close().catch(() => {});
  report.stateChanged = report.stateDiff.length > 0;
  if (report.stateChanged) find({ kind: 'state-changed', subject: '*', problem: report.stateDiff.slice(0, 20).join('\n') });
  report.subjects = targets.map((t) => t.stats);
  report.durationMs = Math.round(performance.now() - started);
  return report;

  // --- one request ------------------------------------------------------------------------
  async function runCase(t: Target, index: number): Promise<void> {
    const r = caseRng(seed, t.entry.subject, index);
    let c: FuzzCase | undefined;
    try {
      c = makeCase(t, index, r, facts, limit, note);
    } catch (err) {
      note(`${t.entry.subject}: the generator failed (case ${index}): ${(err as Error).message}`);
    }
    if (!c) {
      t.stats.skipped++;
      return;
    }
    if (o.exclude?.({ subject: t.entry.subject, family: c.family, label: c.label })) {
      t.stats.excluded++;
      return;
    }
    await send(t, c, index);
  }

  async function send(t: Target, c: FuzzCase, index: number): Promise<void> {
    const s = t.stats;
    s.sent++;
    s.families[c.family] = (s.families[c.family] ?? 0) + 1;
    const at = { subject: t.entry.subject, index, family: c.family, label: c.label, request: preview(c.data), requestBytes: c.data.length };
    const t0 = performance.now();
    let data: Uint8Array;
    try {
      data = (await t.nc.request(t.subject, c.data, { timeout: timeoutMs })).data;
    } catch (err) {
      s.noReply++;
      const noResponder = err instanceof NoRespondersError || (err as Error).cause instanceof NoRespondersError;
      find({
        ...at,
        kind: noResponder ? 'no-responder' : 'no-reply',
        problem: noResponder
          ? `nobody serves ${t.subject}: is the actor down?`
          : `no reply within ${timeoutMs} ms (${(err as Error).message})${c.overflow ? `; ${c.overflow}` : ''}`,
      });
      return;
    }
    const ms = performance.now() - t0;
    s.maxLatencyMs = Math.max(s.maxLatencyMs, Math.round(ms));
    noteLatency({ subject: t.entry.subject, index, label: `${c.family}: ${c.label}`, ms: Math.round(ms) });
    if (ms > (c.slowMs ?? slowMs)) find({ ...at, kind: 'slow', problem: `answered after ${Math.round(ms)} ms (limit ${c.slowMs ?? slowMs} ms)` });
    let env: { ok: boolean; body?: unknown; error?: { code: string; message: string } };
    try {
      env = t.reply.decode(data) as typeof env;
    } catch (err) {
      find({ ...at, kind: 'bad-reply', problem: `the reply does not decode as ${t.entry.reply?.[0]}: ${(err as Error).message}`, reply: previewValue(data) });
      return;
    }
    const reply = previewValue(data);
    if (!env.ok) {
      const { code, message } = env.error!;
      s.refused++;
      s.codes[code] = (s.codes[code] ?? 0) + 1;
      if (!(code in ErrorCodes)) find({ ...at, kind: 'bad-code', problem: `refused with '${code}', not a code of protocol/errors.ts`, reply });
      else if (message.trim() === '') find({ ...at, kind: 'bad-code', problem: `refused with ${code} but no message`, reply });
      else if (code === 'RB_REMOTE_UNKNOWN') find({ ...at, kind: 'handler-threw', problem: `the handler threw: ${message}`, reply });
      else if ('refuse' in c.expect && c.expect.refuse && code !== c.expect.refuse) {
        find({ ...at, kind: 'wrong-code', problem: `refused with ${code} (${message.slice(0, 200)}), expected ${c.expect.refuse}`, reply });
      }
      return;
    }
    s.answeredOk++;
    if (!('answer' in c.expect)) {
      const want = c.expect.refuse ?? 'an error';
      find({ ...at, kind: 'not-refused', problem: `answered ok, expected ${want}`, reply });
      return;
    }
    s.okLabels[c.label] = (s.okLabels[c.label] ?? 0) + 1;
    const wrong = c.expect.check?.(env.body);
    if (wrong) find({ ...at, kind: 'bad-answer', problem: wrong, reply });
  }

  function noteLatency(x: FuzzReport['slowest'][number]): void {
    const list = report.slowest;
    if (list.length >= 10 && x.ms <= list[list.length - 1]!.ms) return;
    list.push(x);
    list.sort((a, b) => b.ms - a.ms);
    if (list.length > 10) list.pop();
  }

  /** A payload over max_payload: the client must refuse to send it (a request or a publish), and the connection must live on. */
  async function clientLimit(t: Target): Promise<void> {
    const over = new Uint8Array(limit + 1).fill(0xc1);
    const refused = (how: string, err: unknown) => {
      if (/max_payload/i.test((err as Error).message)) return true;
      find({ kind: 'client-limit', subject: t.entry.subject, problem: `an over-limit ${how} failed oddly: ${(err as Error).message}` });
      return false;
    };
    let ok = true;
    try {
      await t.nc.request(t.subject, over, { timeout: timeoutMs });
      find({ kind: 'client-limit', subject: t.entry.subject, problem: `a ${over.length}-byte request was sent and answered` });
      ok = false;
    } catch (err) {
      ok = refused('request', err) && ok;
    }
    try {
      t.nc.publish(t.subject, over);
      find({ kind: 'client-limit', subject: t.entry.subject, problem: `a ${over.length}-byte publish was sent` });
      ok = false;
    } catch (err) {
      ok = refused('publish', err) && ok;
    }
    if (ok) t.stats.clientRefused++;
    try {
      await t.nc.flush();
    } catch (err) {
      find({ kind: 'client-limit', subject: t.entry.subject, problem: `the connection broke after an over-limit request: ${(err as Error).message}` });
    }
  }

  /** Strings built to make a schema's patterns backtrack, sent one at a time so the stall shows. */
  async function backtracking(ts: Target[]): Promise<void> {
    for (const t of ts) {
      const base = t.base;
      if (base === undefined) continue;
      const done = new Set<string>();
      for (const { path, pattern } of patternFields(t.entry.message[1])) {
        if (done.has(pattern)) continue;
        done.add(pattern);
        const probe = backtrackingProbe(pattern);
        if (!probe) continue;
        const msg = structuredClone(base);
        setPath(msg, path, probe.text);
        const label = `pattern ${pattern} at /${path.join('/')}: ${probe.how}`;
        note(`${t.entry.subject}: ${label}; ${probe.growth}`);
        if (o.exclude?.({ subject: t.entry.subject, family: 'backtracking', label })) {
          t.stats.excluded++;
          continue;
        }
        await send(t, { family: 'backtracking', label, data: encodeAny(msg), expect: { refuse: 'RB_SCHEMA_MISMATCH' }, slowMs: 100 }, -1);
      }
    }
  }

  /** Malformed events on the subjects actors listen to: dropped, and nothing changes. */
  async function fuzzEvents(): Promise<void> {
    const stored = subjects.storedEvents(site);
    const n = Math.max(1, Math.min(o.cases, 30));
    const used = new Set<NatsConnection>();
    for (const entry of catalog) {
      if (entry.kind !== 'event') continue;
      const filled = fillEventSubject(entry.subject, names, stored);
      if (!filled) {
        note(`${entry.subject}: not fuzzed (every fill of it is kept in the event stream)`);
        continue;
      }
      const sender = senderFor(entry.subject, filled, names);
      if ('problem' in sender) {
        find({ kind: 'not-covered', subject: entry.subject, problem: sender.problem });
        continue;
      }
      const { subject } = sender;
      const pub = await connFor(sender.as);
      used.add(pub);
      const codec = codecFor(entry.message[1]);
      let base = exampleFor(entry.message[1]);
      if (base !== undefined && !accepts(codec, base)) base = undefined;
      let sent = 0;
      for (let i = 0; i < n; i++) {
        const r = caseRng(seed, `event:${entry.subject}`, i);
        const family = (['random-bytes', 'random-msgpack', 'mutated', 'wrong-major'] as const)[i % 4]!;
        const c = malformed(family, r, codec, base, Object.keys((base ?? {}) as object), facts);
        if (!c) continue;
        pub.publish(subject, c.data);
        sent++;
      }
      published.set(subject, (published.get(subject) ?? 0) + sent);
      report.eventsPublished[entry.subject] = sent;
    }
    for (const c of used) await c.flush();
  }

  async function liveness(): Promise<void> {
    const operator = await connFor({ role: Role.Operator, name: names.user });
    const ask = async (who: string, subject: string, data: Uint8Array, okWanted: boolean, via = nc) => {
      try {
        const env = decodeAny((await via.request(subject, data, { timeout: timeoutMs })).data) as { ok?: boolean; error?: { code?: string } };
        if (okWanted ? env.ok !== true : !env.error?.code?.startsWith('RB_')) {
          find({ kind: 'actor-down', subject, problem: `${who} answered a normal request strangely: ${JSON.stringify(env).slice(0, 300)}` });
        }
      } catch (err) {
        find({ kind: 'actor-down', subject, problem: `${who} no longer answers: ${(err as Error).message}` });
      }
    };
    await ask('the registry', subjects.regList(site), codecs.listRequest.encode({ v: PROTOCOL_MAJOR }), true);
    await ask('the scheduler', subjects.schedQuery(site), codecs.queryRequest.encode({ v: PROTOCOL_MAJOR, what: 'jobs' }), true);
    await ask(`render server ${host}`, subjects.hostCtl(site, host), codecs.hostCtl.encode({ v: PROTOCOL_MAJOR, action: 'kill-task', taskId: 'fuzz-liveness.0' }), false, operator);
  }
}

/** The request subjects of the catalog and the operators' twins, each filled in for this farm and its sender, with its codecs and messages. */
function requestTargets(names: SenderNames, facts: FarmFacts, note: (line: string) => void, find: (f: Finding) => void): Omit<Target, 'nc'>[] {
  const targets: Omit<Target, 'nc'>[] = [];
  const requests = catalog.filter((e) => e.kind === 'request');
  for (const [twin, of] of Object.entries(OPERATOR_TWINS)) {
    const entry = requests.find((e) => e.subject === of);
    if (entry && !requests.some((e) => e.subject === twin)) requests.push({ ...entry, subject: twin, from: 'operator', what: `${entry.what} (an operator's, for any job)` });
  }
  for (const entry of requests) {
    const filled = fill(entry.subject, names);
    if (/[<>]/.test(filled)) {
      find({ kind: 'not-covered', subject: entry.subject, problem: `the fuzzer cannot fill ${filled.match(/<[^>]+>/)?.[0]}: teach tools/chaos/fuzz.ts` });
      continue;
    }
    const sender = senderFor(entry.subject, filled, names);
    if ('problem' in sender) {
      find({ kind: 'not-covered', subject: entry.subject, problem: sender.problem });
      continue;
    }
    if (!entry.reply) {
      find({ kind: 'not-covered', subject: entry.subject, problem: 'a request without a reply schema in the catalog' });
      continue;
    }
    const [name, schema] = entry.message;
    const request = codecFor(schema) as Codec<unknown>;
    let base: unknown = baseMessages[name]?.(facts);
    if (base !== undefined && !accepts(request, base)) {
      note(`${entry.subject}: the base message for ${name} no longer fits its schema (${reason(request, base)}); using one made from the schema`);
      base = undefined;
    }
    if (base === undefined) {
      base = exampleFor(schema);
      if (base !== undefined && !accepts(request, base)) base = undefined;
      if (base === undefined) note(`${entry.subject}: no valid ${name} to mutate; random and oversize cases only`);
    }
    const semantic = (semanticCases[name] ?? []).filter((c) => !c.roles || c.roles.includes(sender.as.role));
    if (semantic.length === 0) note(`${entry.subject}: no hand-made cases for ${name}`);
    targets.push({
      entry, subject: sender.subject, as: sender.as, template: entry.subject, request, reply: codecFor(entry.reply[1]) as Codec<unknown>, base, semantic,
      stats: { subject: entry.subject, schema: name, sent: 0, refused: 0, answeredOk: 0, noReply: 0, skipped: 0, excluded: 0, clientRefused: 0, families: {}, codes: {}, okLabels: {}, maxLatencyMs: 0 },
    });
  }
  return targets;
}

/** A catalog template filled in: the site, the render server under test, the fuzzer's user, a peer site. */
function fill(template: string, n: SenderNames): string {
  return template.replaceAll('<site>', n.site).replaceAll('<host>', n.host).replaceAll('<user>', n.user).replaceAll('<peer>', 'fuzz-peer');
}

/** One subject of an event template that is not kept in the event stream (so garbage does not pile up there). */
function fillEventSubject(template: string, n: SenderNames, stored: string[]): string | undefined {
  for (const event of ['slot', 'progress', 'started', 'fuzz']) {
    const s = fill(template, n).replaceAll('<job>', 'fuzz-nojob').replaceAll('<frame>', '1').replaceAll('<event>', event);
    if (/[<>]/.test(s)) return undefined;
    if (!stored.some((p) => subjectMatches(p, s))) return s;
  }
  return undefined;
}

// --- helpers -------------------------------------------------------------------------------

async function pool(work: (() => Promise<void>)[], n: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < work.length) await work[next++]!();
  };
  await Promise.all(Array.from({ length: Math.max(1, n) }, worker));
}

function preview(data: Uint8Array): string {
  const v = previewValue(data);
  return `${data.length} bytes: ${v}`;
}

function previewValue(data: Uint8Array): string {
  try {
    const s = JSON.stringify(decodeAny(data), (_k, x: unknown) => (typeof x === 'string' && x.length > 80 ? `${x.slice(0, 40)}…(${x.length} chars)` : x instanceof Uint8Array ? `<${x.length} bytes>` : x));
    return s === undefined ? '(undefined)' : s.length > 400 ? `${s.slice(0, 400)}…` : s;
  } catch {
    return `not msgpack: ${Buffer.from(data.subarray(0, 48)).toString('hex')}${data.length > 48 ? '…' : ''}`;
  }
}

/** Is every finding accounted for? The farm passed when the report has none. */
export function passed(report: FuzzReport): boolean {
  return report.findings.length === 0 && report.findingsDropped === 0;
}

/** The report as text: a table per subject, then every finding with what replays it. */
export function formatReport(report: FuzzReport): string {
  const lines: string[] = [];
  const sent = report.subjects.reduce((n, s) => n + s.sent, 0);
  lines.push(`fuzz: seed ${report.seed}, ${report.cases} cases per subject, ${sent} requests in ${(report.durationMs / 1000).toFixed(1)} s`);
  for (const s of report.subjects) {
    const codes = Object.entries(s.codes).map(([c, n]) => `${c}×${n}`).join(' ');
    lines.push(`  ${s.subject.padEnd(30)} sent ${String(s.sent).padStart(5)}  refused ${String(s.refused).padStart(5)}  ok ${String(s.answeredOk).padStart(3)}  no reply ${s.noReply}  skipped ${s.skipped}${s.excluded ? `  excluded ${s.excluded}` : ''}  max ${s.maxLatencyMs} ms  ${codes}`);
    for (const [label, n] of Object.entries(s.okLabels)) lines.push(`      ok (allowed): ${label} ×${n}`);
  }
  if (report.slowest.length > 0) lines.push(`  slowest: ${report.slowest.slice(0, 5).map((x) => `${x.ms} ms ${x.subject}#${x.index} (${x.label.slice(0, 60)})`).join('; ')}`);
  const ev = Object.entries(report.eventsPublished).map(([s, n]) => `${s}×${n}`).join(' ');
  if (ev) lines.push(`  malformed events published: ${ev}`);
  for (const n of report.notes) lines.push(`  note: ${n}`);
  lines.push(report.stateChanged ? `  farm state CHANGED:\n    ${report.stateDiff.join('\n    ')}` : '  farm state unchanged');
  if (passed(report)) {
    lines.push('  no findings');
  } else {
    lines.push(`  ${report.findings.length + report.findingsDropped} finding(s) (seed ${report.seed}):`);
    for (const f of report.findings) {
      const where = f.index !== undefined ? ` case ${f.index}` : '';
      lines.push(`  - [${f.kind}] ${f.subject}${where}${f.family ? ` (${f.family}${f.label ? `: ${f.label}` : ''})` : ''}: ${f.problem}`);
      if (f.request) lines.push(`      sent: ${f.request}`);
      if (f.reply) lines.push(`      reply: ${f.reply}`);
    }
    if (report.findingsDropped > 0) lines.push(`  … and ${report.findingsDropped} more`);
  }
  return lines.join('\n');
}
