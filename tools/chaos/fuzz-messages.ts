import { Kind, type TSchema } from '@sinclair/typebox';
import { isToken, PROTOCOL_MAJOR, Role, type ErrorCode } from '../../protocol/index.ts';
import type { Rng } from './fuzz-prng.ts';

/**
 * What the fuzzer knows about the farm under test, read before the first case: the render
 * server it aims at, and the jobs the scheduler holds (ids, tasks and their attempts).
 */
export interface FarmFacts {
  site: string;
  /** The render server whose `host.<host>.*` subjects are fuzzed. */
  host: string;
  /** Its slot count, from the registry; assignments go to slots beyond it. */
  slotCount: number;
  jobs: KnownJob[];
}

export interface KnownJob {
  jobId: string;
  state: string;
  finished: boolean;
  tasks: { taskIndex: number; attempt: number; state: string }[];
}

/** How a request must be answered. */
export type Expectation =
  /** Refused: `{ ok: false, error }` with this code (any RB_ code when none is given). */
  | { refuse?: ErrorCode }
  /**
   * Well-formed, about something unknown or already settled, where the protocol may answer ok
   * (e.g. a duplicated result is acknowledged and dropped). Refusals are fine too; an ok body
   * must pass `check`, which returns what is wrong with it.
   */
  | { answer: true; check?: (body: unknown) => string | undefined };

/** A hand-made case: well-formed enough to reach the handler, about a problem the handler must see. */
export interface SemanticCase {
  label: string;
  /** The message, or undefined when the farm has nothing to build it from (e.g. no finished job). */
  make(f: FarmFacts, r: Rng): unknown;
  expect: Expectation;
  /**
   * Costly (near the payload limit, or heavy to refuse): sent once, in the first pass over the
   * hand-made cases, never drawn again at random.
   */
  once?: boolean;
  /**
   * Only when sent as one of these roles (default: as whoever sends on the subject). The same
   * message may be answered otherwise on an owner's subject (`sched.limits`, as an artist) and on
   * an operator's twin (`op.limits`).
   */
  roles?: Role[];
}

/** One message, expected to be answered one way for an operator (on `op.*`) and another for an artist. */
function byRole(label: string, make: SemanticCase['make'], operator: Expectation, artist: Expectation): SemanticCase[] {
  return [
    { label, make, expect: operator, roles: [Role.Operator] },
    { label: `${label}, as an artist`, make, expect: artist, roles: [Role.Artist] },
  ];
}
const forbidden: Expectation = { refuse: 'RB_FORBIDDEN' };

const ghost = 'fuzz-ghost';
const noJob = 'fuzz-nojob';
const stats = { wallMs: 10, cpuMs: 5, peakRssKb: 1000, bytesWritten: 0 };
const inventory = {
  machine: { family: 'x86_64', type: 'fuzz' },
  os: { family: 'unix', type: 'linux', version: '6.1.0' },
  cpu: { count: 2, family: 'intel', type: 'fuzz', speedMhz: 2000 },
  ramMb: 4000,
  swapMb: 0,
  packages: [{ name: 'povray', version: '3.7.0.10' }],
  licenses: [],
};

/**
 * Valid messages to mutate, by schema name (protocol/catalog.ts). None of them is ever sent as
 * it is: the fuzzer only sends what its own codec refuses, or the hand-made cases below. Each
 * is chosen to do the least harm if a peer wrongly accepted it anyway (a ghost host, a job
 * nobody can run, a task for a slot that does not exist), so that harm shows as a state change.
 */
export const baseMessages: Record<string, (f: FarmFacts) => unknown> = {
  HostRegister: () => ({ v: PROTOCOL_MAJOR, host: ghost, serverId: 'fuzz-server', inventory, slots: [{ index: 0, state: 'idle' }], heartbeatMs: 2000 }),
  HostHeartbeat: () => ({ v: PROTOCOL_MAJOR, host: ghost, serverId: 'fuzz-server', slots: [{ index: 0, state: 'idle' }], load: 0.5, draining: false }),
  HostBye: () => ({ v: PROTOCOL_MAJOR, host: ghost, serverId: 'fuzz-server' }),
  MatchRequest: () => ({ v: PROTOCOL_MAJOR, requirements: { os: 'linux@6.*', packages: ['povray@3.7.*'], ramMb: 1000, licenses: ['fuzz-license'] }, freeOnly: true }),
  ListRequest: () => ({ v: PROTOCOL_MAJOR, after: ghost, limit: 5 }),
  SubmitRequest: () => ({ v: PROTOCOL_MAJOR, spec: unrunnableSpec() }),
  QueryRequest: () => ({ v: PROTOCOL_MAJOR, what: 'job', jobId: noJob }),
  CtlRequest: () => ({ v: PROTOCOL_MAJOR, action: 'cancel', jobId: noJob }),
  LimitsRequest: () => ({ v: PROTOCOL_MAJOR, action: 'remove', name: 'fuzz-no-such-limit' }),
  HostsRequest: () => ({ v: PROTOCOL_MAJOR, action: 'clear', host: ghost }),
  SharesRequest: () => ({ v: PROTOCOL_MAJOR, action: 'remove', project: 'fuzz-no-such-project' }),
  BudgetsRequest: () => ({ v: PROTOCOL_MAJOR, action: 'clear', project: 'fuzz-no-such-project' }),
  TaskResult: () => ({
    v: PROTOCOL_MAJOR, host: ghost, slot: 0, taskId: `${noJob}.0`, jobId: noJob, taskIndex: 0, attempt: 1, status: 'done',
    outputs: [{ frame: 1, path: '/nonexistent/fuzz/f_0001.png' }], stats, wantNext: false, want: 0,
  }),
  AssignRequest: (f) => ({ v: PROTOCOL_MAJOR, host: ghost, assignments: [assignment(noJob, 0, f.slotCount + 7)] }),
  HostCtl: () => ({ v: PROTOCOL_MAJOR, action: 'kill-task', taskId: `${noJob}.0` }),
  IntakeRequest: () => ({ v: PROTOCOL_MAJOR, kind: 'cancel', originJob: noJob }),
  RemoteUpdate: () => ({ v: PROTOCOL_MAJOR, jobId: noJob, bundleId: 'fuzz-bundle', state: 'started', at: 1 }),
  LoadRequest: () => ({ v: PROTOCOL_MAJOR, renderer: 'povray', priority: 50 }),
};

/** A job no host can take (it needs a license nobody holds): harmless if it were ever queued. */
function unrunnableSpec(): Record<string, unknown> {
  return {
    name: 'fuzz',
    scene: '/nonexistent/fuzz/scene.pov',
    renderer: 'command',
    command: 'true',
    frames: '1-3',
    output: { dir: '/nonexistent/fuzz/out', pattern: 'f_####.png' },
    requirements: { licenses: ['fuzz-license-nobody-holds'] },
  };
}

function without(o: Record<string, unknown>, key: string): Record<string, unknown> {
  const { [key]: _gone, ...rest } = o;
  return rest;
}

function assignment(jobId: string, taskIndex: number, slot: number): Record<string, unknown> {
  return {
    taskId: `${jobId}.${taskIndex}`, jobId, taskIndex, attempt: 1, slot, frames: [1], renderer: 'command',
    scene: '/nonexistent/fuzz/scene', command: 'true', outputDir: '/nonexistent/fuzz/out', outputPattern: 'f_####.png',
  };
}

/** Ids that trip code using plain objects as maps. */
const HOSTILE_IDS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'prototype', ''];

/** Stands for a string of '!' that brings the encoded message to just under the payload limit (its error must still fit in a reply). */
export const FILL = Symbol('fill');

const finishedJobs = (f: FarmFacts) => f.jobs.filter((j) => j.finished);
const finishedTasks = (f: FarmFacts) => finishedJobs(f).flatMap((j) => j.tasks.filter((t) => t.attempt > 0).map((t) => ({ jobId: j.jobId, ...t })));
const someSlot = (f: FarmFacts, r: Rng) => r.pick([0, f.slotCount, f.slotCount + 100, 1023]);

/** An ok reply to a result must not hand a forged slot any task. */
const noTaskHandedOut = (body: unknown): string | undefined => {
  const b = body as { next?: unknown; following?: unknown };
  if (b.next || b.following) return `a result nobody should act on was handed a task: ${JSON.stringify(b).slice(0, 300)}`;
  return undefined;
};
/** A reg.list page must hold at most `n` hosts, sorted by name, each after `after`, and say whether more follow. */
const pageOf = (n: number, after?: string) => (body: unknown): string | undefined => {
  const b = body as { hosts?: { host?: unknown }[]; more?: unknown };
  const names = (b.hosts ?? []).map((h) => String(h.host));
  if (names.length > n) return `a page limited to ${n} holds ${names.length} hosts`;
  if (names.some((h, i) => i > 0 && h <= names[i - 1]!)) return `a page not sorted by name: ${names.join(', ')}`;
  if (after !== undefined && names.some((h) => h <= after)) return `a page after '${after}' holds ${names.filter((h) => h <= after).join(', ')}`;
  return typeof b.more === 'boolean' ? undefined : `a page without more: ${JSON.stringify(b).slice(0, 200)}`;
};
const unknownToRegistry = (body: unknown): string | undefined =>
  (body as { known?: unknown }).known === false ? undefined : `the registry says it knows this host/server: ${JSON.stringify(body)}`;

function result(f: FarmFacts, r: Rng, jobId: string, taskIndex: number, attempt: number, status: string): Record<string, unknown> {
  const want = r.int(0, 2);
  return {
    v: PROTOCOL_MAJOR, host: f.host, slot: someSlot(f, r), taskId: `${jobId}.${taskIndex}`, jobId, taskIndex, attempt, status,
    outputs: status === 'done' ? [{ frame: 1, path: '/nonexistent/fuzz/f_0001.png' }] : [],
    ...(status === 'failed' ? { error: { code: 'RB_RENDER_FAILED', message: 'fuzz' } } : {}),
    stats, wantNext: want > 0, want,
  };
}

/**
 * Hand-made cases per schema name: unknown ids, duplicates, stale and out-of-order results, bad
 * patterns, near-limit payloads whose error must still fit in a reply. Every one of them must
 * leave the farm as it was.
 */
export const semanticCases: Record<string, SemanticCase[]> = {
  HostRegister: [
    {
      label: 'this host, slot index twice',
      make: (f, r) => ({ ...(baseMessages.HostRegister!(f) as object), host: f.host, serverId: `fuzz-${r.string(6)}`, slots: [{ index: 0, state: 'idle' }, { index: 0, state: 'busy' }] }),
      expect: { refuse: 'RB_SCHEMA_MISMATCH' },
    },
    {
      label: 'this host, slot index twice out of order',
      make: (f, r) => ({ ...(baseMessages.HostRegister!(f) as object), host: f.host, serverId: `fuzz-${r.string(6)}`, slots: [{ index: 3, state: 'idle' }, { index: 1, state: 'idle' }, { index: 3, state: 'idle' }] }),
      expect: { refuse: 'RB_SCHEMA_MISMATCH' },
    },
    // the subject names the sender: nobody registers another host
    { label: 'another host than the sender', make: (f) => baseMessages.HostRegister!(f), expect: forbidden },
  ],
  HostHeartbeat: [
    {
      label: 'another host than the sender',
      make: (_f, r) => ({ v: PROTOCOL_MAJOR, host: `${ghost}-${r.string(5)}`, serverId: 'fuzz-server', slots: [{ index: 0, state: 'busy', taskId: 'x.0' }], draining: true }),
      expect: forbidden,
    },
    {
      label: 'this host, another server instance, draining',
      make: (f, r) => ({ v: PROTOCOL_MAJOR, host: f.host, serverId: `fuzz-${r.string(8)}`, slots: [{ index: 0, state: 'busy', taskId: `${noJob}.0` }], load: 99, draining: true }),
      expect: { answer: true, check: unknownToRegistry },
    },
    {
      label: 'this host, slot index twice',
      make: (f, r) => ({ v: PROTOCOL_MAJOR, host: f.host, serverId: `fuzz-${r.string(8)}`, slots: [{ index: 0, state: 'idle' }, { index: 0, state: 'idle' }] }),
      expect: { refuse: 'RB_SCHEMA_MISMATCH' },
    },
    {
      label: 'this host, another server instance, near-limit slot list',
      make: (f) => ({ v: PROTOCOL_MAJOR, host: f.host, serverId: 'fuzz-server', slots: Array.from({ length: 40_000 }, (_, index) => ({ index, state: 'idle' })) }),
      expect: { answer: true, check: unknownToRegistry },
      once: true,
    },
  ],
  HostBye: [
    { label: 'another host than the sender', make: (_f, r) => ({ v: PROTOCOL_MAJOR, host: `${ghost}-${r.string(5)}`, serverId: 'fuzz-server' }), expect: forbidden },
    { label: 'this host, another server instance', make: (f, r) => ({ v: PROTOCOL_MAJOR, host: f.host, serverId: `fuzz-${r.string(8)}` }), expect: { answer: true } },
  ],
  MatchRequest: [
    { label: 'os pattern with a bad version', make: () => ({ v: PROTOCOL_MAJOR, requirements: { os: 'linux@6.x.y**' } }), expect: { refuse: 'RB_BAD_SPEC' } },
    { label: 'machine pattern with three parts', make: () => ({ v: PROTOCOL_MAJOR, requirements: { machine: 'a/b/c' } }), expect: { refuse: 'RB_BAD_SPEC' } },
    { label: 'package pattern with two @', make: () => ({ v: PROTOCOL_MAJOR, requirements: { packages: ['povray@@3'] }, freeOnly: true }), expect: { refuse: 'RB_BAD_SPEC' } },
    { label: 'cpu pattern that is empty', make: () => ({ v: PROTOCOL_MAJOR, requirements: { cpu: ' ' } }), expect: { refuse: 'RB_BAD_SPEC' } },
    { label: 'near-limit bad os pattern', make: () => ({ v: PROTOCOL_MAJOR, requirements: { os: FILL } }), expect: { refuse: 'RB_BAD_SPEC' }, once: true },
    { label: 'requirements nobody meets', make: () => ({ v: PROTOCOL_MAJOR, requirements: { licenses: ['fuzz-none'], cpuCount: 100_000, ramMb: 2 ** 40 } }), expect: { answer: true } },
  ],
  ListRequest: [
    { label: 'plain', make: () => ({ v: PROTOCOL_MAJOR }), expect: { answer: true } },
    { label: 'with an unknown field', make: (_f, r) => ({ v: PROTOCOL_MAJOR, [r.string(6)]: r.string(10) }), expect: { answer: true } },
    { label: 'after that is not a string', make: (_f, r) => ({ v: PROTOCOL_MAJOR, after: r.pick([42, true, null, ['h1'], { host: 'h1' }]) }), expect: { refuse: 'RB_SCHEMA_MISMATCH' } },
    { label: 'after that is no host name', make: () => ({ v: PROTOCOL_MAJOR, after: 'Not A Host!' }), expect: { refuse: 'RB_SCHEMA_MISMATCH' } },
    { label: 'a near-limit after', make: () => ({ v: PROTOCOL_MAJOR, after: FILL }), expect: { refuse: 'RB_SCHEMA_MISMATCH' }, once: true },
    { label: 'limit 0', make: () => ({ v: PROTOCOL_MAJOR, limit: 0 }), expect: { refuse: 'RB_SCHEMA_MISMATCH' } },
    { label: 'a negative limit', make: (_f, r) => ({ v: PROTOCOL_MAJOR, limit: -r.int(1, 1000) }), expect: { refuse: 'RB_SCHEMA_MISMATCH' } },
    { label: 'a limit that is not a whole number', make: (_f, r) => ({ v: PROTOCOL_MAJOR, limit: r.pick([0.5, 2.5, Number.NaN, Infinity]) }), expect: { refuse: 'RB_SCHEMA_MISMATCH' } },
    { label: 'a limit that is a string', make: () => ({ v: PROTOCOL_MAJOR, limit: '10' }), expect: { refuse: 'RB_SCHEMA_MISMATCH' } },
    { label: 'a page of one host', make: () => ({ v: PROTOCOL_MAJOR, limit: 1 }), expect: { answer: true, check: pageOf(1) } },
    { label: "a page after 'm', a huge limit", make: () => ({ v: PROTOCOL_MAJOR, after: 'm', limit: 2 ** 31 }), expect: { answer: true, check: pageOf(Infinity, 'm') } },
    // a host name is compared as a string, never looked up on an object
    ...HOSTILE_IDS.map((after): SemanticCase => ({ label: `after '${after}'`, make: () => ({ v: PROTOCOL_MAJOR, after }), expect: isToken(after) ? { answer: true } : { refuse: 'RB_SCHEMA_MISMATCH' } })),
  ],
  SubmitRequest: [
    { label: 'frames that end before they start', make: () => ({ v: PROTOCOL_MAJOR, spec: { ...unrunnableSpec(), frames: '5-1' } }), expect: { refuse: 'RB_BAD_JOB' } },
    { label: 'frames that are not frames', make: () => ({ v: PROTOCOL_MAJOR, spec: { ...unrunnableSpec(), frames: '1-2,a' } }), expect: { refuse: 'RB_BAD_JOB' } },
    { label: 'a frame beyond the largest', make: () => ({ v: PROTOCOL_MAJOR, spec: { ...unrunnableSpec(), frames: '0-99999999' } }), expect: { refuse: 'RB_BAD_JOB' } },
    { label: 'more frames than a job may have', make: () => ({ v: PROTOCOL_MAJOR, spec: { ...unrunnableSpec(), frames: '1-900000,1000000-1900000' } }), expect: { refuse: 'RB_BAD_JOB' }, once: true },
    { label: 'a relative scene', make: () => ({ v: PROTOCOL_MAJOR, spec: { ...unrunnableSpec(), scene: 'scene.pov' } }), expect: { refuse: 'RB_BAD_JOB' } },
    { label: "renderer 'command' without a command", make: () => ({ v: PROTOCOL_MAJOR, spec: without(unrunnableSpec(), 'command') }), expect: { refuse: 'RB_BAD_JOB' } },
    { label: 'a POV-Ray job with a command', make: () => ({ v: PROTOCOL_MAJOR, spec: { ...unrunnableSpec(), renderer: 'povray' } }), expect: { refuse: 'RB_BAD_JOB' } },
    { label: 'no output directory', make: () => ({ v: PROTOCOL_MAJOR, spec: { ...unrunnableSpec(), output: { pattern: 'f_#.png' } } }), expect: { refuse: 'RB_BAD_JOB' } },
    { label: 'a bad requirement pattern', make: () => ({ v: PROTOCOL_MAJOR, spec: { ...unrunnableSpec(), requirements: { os: 'linux@@6' } } }), expect: { refuse: 'RB_BAD_SPEC' } },
    {
      label: 'a new job id with a bad spec',
      make: (_f, r) => ({ v: PROTOCOL_MAJOR, jobId: `fuzz-${r.string(8)}`, spec: { ...unrunnableSpec(), frames: '3-2' } }),
      expect: { refuse: 'RB_BAD_JOB' },
    },
    {
      label: "an existing job's id again (a retried submit), another spec",
      make: (f, r) => (f.jobs.length === 0 ? undefined : { v: PROTOCOL_MAJOR, jobId: r.pick(f.jobs).jobId, spec: unrunnableSpec() }),
      expect: { answer: true },
    },
    { label: 'near-limit frames that are not frames', make: () => ({ v: PROTOCOL_MAJOR, spec: { ...unrunnableSpec(), frames: FILL } }), expect: { refuse: 'RB_BAD_JOB' }, once: true },
    // a job belongs to whoever submits it: the subject's user, never the message's word
    { label: 'a job that names another user', make: (_f, r) => ({ v: PROTOCOL_MAJOR, spec: { ...unrunnableSpec(), user: `fuzz-other-${r.string(4)}` } }), expect: forbidden },
  ],
  QueryRequest: [
    ...HOSTILE_IDS.map((jobId): SemanticCase => ({ label: `job '${jobId}'`, make: () => ({ v: PROTOCOL_MAJOR, what: 'job', jobId }), expect: { refuse: 'RB_UNKNOWN_JOB' } })),
    { label: 'an unknown job', make: (_f, r) => ({ v: PROTOCOL_MAJOR, what: 'job', jobId: `fuzz-${r.string(10)}` }), expect: { refuse: 'RB_UNKNOWN_JOB' } },
    { label: 'a near-limit job id', make: () => ({ v: PROTOCOL_MAJOR, what: 'job', jobId: FILL }), expect: { refuse: 'RB_UNKNOWN_JOB' }, once: true },
    { label: 'every job', make: () => ({ v: PROTOCOL_MAJOR, what: 'jobs' }), expect: { answer: true } },
    { label: 'a known job', make: (f, r) => (f.jobs.length === 0 ? undefined : { v: PROTOCOL_MAJOR, what: 'job', jobId: r.pick(f.jobs).jobId }), expect: { answer: true } },
  ],
  CtlRequest: [
    ...HOSTILE_IDS.map((jobId): SemanticCase => ({ label: `cancel '${jobId}'`, make: () => ({ v: PROTOCOL_MAJOR, action: 'cancel', jobId }), expect: { refuse: 'RB_UNKNOWN_JOB' } })),
    { label: 'cancel an unknown job', make: (_f, r) => ({ v: PROTOCOL_MAJOR, action: 'cancel', jobId: `fuzz-${r.string(10)}` }), expect: { refuse: 'RB_UNKNOWN_JOB' } },
    { label: 'cancel a near-limit job id', make: () => ({ v: PROTOCOL_MAJOR, action: 'cancel', jobId: FILL }), expect: { refuse: 'RB_UNKNOWN_JOB' }, once: true },
    { label: 'pause an unknown job', make: (_f, r) => ({ v: PROTOCOL_MAJOR, action: 'pause', jobId: `fuzz-${r.string(10)}` }), expect: { refuse: 'RB_UNKNOWN_JOB' } },
    { label: 'priority without a priority', make: (f, r) => (f.jobs.length === 0 ? undefined : { v: PROTOCOL_MAJOR, action: 'priority', jobId: r.pick(f.jobs).jobId }), expect: { refuse: 'RB_BAD_ARGUMENT' } },
    {
      label: 'release a job that is not held',
      make: (f, r) => (finishedJobs(f).length === 0 ? undefined : { v: PROTOCOL_MAJOR, action: 'release', jobId: r.pick(finishedJobs(f)).jobId }),
      expect: { refuse: 'RB_BAD_ARGUMENT' },
    },
    {
      label: 'retry frames a job does not have',
      make: (f, r) => (finishedJobs(f).length === 0 ? undefined : { v: PROTOCOL_MAJOR, action: 'retry', jobId: r.pick(finishedJobs(f)).jobId, frames: [900_000 + r.int(0, 1000)] }),
      expect: { refuse: 'RB_BAD_ARGUMENT' },
    },
    {
      label: 'cancel a job that already ended',
      make: (f, r) => (finishedJobs(f).length === 0 ? undefined : { v: PROTOCOL_MAJOR, action: 'cancel', jobId: r.pick(finishedJobs(f)).jobId }),
      expect: { answer: true },
    },
  ],
  HostsRequest: [
    ...byRole('clear a host that is not sick', (f, r) => ({ v: PROTOCOL_MAJOR, action: 'clear', host: r.bool() ? f.host : `fuzz-${r.string(6)}` }), { refuse: 'RB_UNKNOWN_HOST' }, forbidden),
    { label: 'list the sick hosts', make: () => ({ v: PROTOCOL_MAJOR, action: 'sick' }), expect: { answer: true } },
  ],
  LimitsRequest: [
    // changes are for operators (op.limits); an artist's (sched.limits) is refused before anything is looked up
    ...byRole('remove a limit that does not exist', (_f, r) => ({ v: PROTOCOL_MAJOR, action: 'remove', name: `fuzz-${r.string(8)}` }), { refuse: 'RB_BAD_ARGUMENT' }, forbidden),
    { label: 'list the limits', make: () => ({ v: PROTOCOL_MAJOR, action: 'list' }), expect: { answer: true } },
    // a name that is a valid token is looked up in a Map (no prototype to trip on), the rest fail the schema
    ...HOSTILE_IDS.flatMap((name) => byRole(`remove limit '${name}'`, () => ({ v: PROTOCOL_MAJOR, action: 'remove', name }), isToken(name) ? { refuse: 'RB_BAD_ARGUMENT' } : { refuse: 'RB_SCHEMA_MISMATCH' }, isToken(name) ? forbidden : { refuse: 'RB_SCHEMA_MISMATCH' })),
  ],
  SharesRequest: [
    ...byRole('remove a share that was never set', (_f, r) => ({ v: PROTOCOL_MAJOR, action: 'remove', project: `fuzz-${r.string(8)}` }), { refuse: 'RB_BAD_ARGUMENT' }, forbidden),
    { label: 'list the shares', make: () => ({ v: PROTOCOL_MAJOR, action: 'list' }), expect: { answer: true } },
    ...HOSTILE_IDS.flatMap((project) => byRole(`remove share '${project}'`, () => ({ v: PROTOCOL_MAJOR, action: 'remove', project }), isToken(project) ? { refuse: 'RB_BAD_ARGUMENT' } : { refuse: 'RB_SCHEMA_MISMATCH' }, isToken(project) ? forbidden : { refuse: 'RB_SCHEMA_MISMATCH' })),
  ],
  BudgetsRequest: [
    ...byRole('clear a budget that was never set', (_f, r) => ({ v: PROTOCOL_MAJOR, action: 'clear', project: `fuzz-${r.string(8)}` }), { refuse: 'RB_BAD_ARGUMENT' }, forbidden),
    { label: 'list the budgets', make: () => ({ v: PROTOCOL_MAJOR, action: 'list' }), expect: { answer: true } },
    ...HOSTILE_IDS.flatMap((project) => byRole(`clear budget '${project}'`, () => ({ v: PROTOCOL_MAJOR, action: 'clear', project }), isToken(project) ? { refuse: 'RB_BAD_ARGUMENT' } : { refuse: 'RB_SCHEMA_MISMATCH' }, isToken(project) ? forbidden : { refuse: 'RB_SCHEMA_MISMATCH' })),
  ],
  IntakeRequest: [
    // a peer cancels only jobs it sent; a job from a peer never names a site of its own (no chaining)
    { label: 'cancel an origin never submitted', make: (_f, r) => ({ v: PROTOCOL_MAJOR, kind: 'cancel', originJob: `fuzz-${r.string(10)}` }), expect: { refuse: 'RB_UNKNOWN_JOB' } },
    { label: 'a job naming a site', make: (_f, r) => ({ v: PROTOCOL_MAJOR, kind: 'submit', originJob: `fuzz-${r.string(10)}`, spec: { ...unrunnableSpec(), site: 'elsewhere' } }), expect: { refuse: 'RB_BAD_JOB' } },
  ],
  RemoteUpdate: [
    // news of an outsourced job: an unknown job, and a local job never sent to the peer the subject names, are refused
    { label: 'an unknown job', make: (_f, r) => ({ v: PROTOCOL_MAJOR, jobId: `fuzz-${r.string(10)}`, bundleId: `fuzz-${r.string(6)}`, state: 'done', at: 1 }), expect: { refuse: 'RB_UNKNOWN_JOB' } },
    {
      label: 'a job never sent to that peer',
      make: (f, r) => (f.jobs.length === 0 ? undefined : { v: PROTOCOL_MAJOR, jobId: r.pick(f.jobs).jobId, bundleId: `fuzz-${r.string(6)}`, state: 'failed', final: true, outputs: [{ frame: 1, path: '/etc/passwd' }], at: 1 }),
      expect: forbidden,
    },
  ],
  LoadRequest: [
    // the queue's load for a peer's quote: any renderer and priority is answered, and changes nothing
    { label: 'a renderer nobody uses', make: (_f, r) => ({ v: PROTOCOL_MAJOR, renderer: `fuzz-${r.string(8)}`, priority: r.int(0, 1000) }), expect: { answer: true } },
    { label: 'the most urgent priority', make: () => ({ v: PROTOCOL_MAJOR, renderer: 'povray', priority: 0 }), expect: { answer: true } },
  ],
  TaskResult: [
    // only the host that holds a lease can end its task: a result naming another is refused
    { label: 'another host than the sender', make: (f, r) => ({ ...result(f, r, `fuzz-${r.string(8)}`, 0, 1, 'done'), host: `${ghost}-${r.string(4)}` }), expect: forbidden },
    { label: 'an unknown job', make: (f, r) => result(f, r, `fuzz-${r.string(8)}`, r.int(0, 5), r.int(1, 3), r.pick(['done', 'failed'])), expect: { answer: true, check: noTaskHandedOut } },
    {
      label: 'a known job, a task it does not have',
      make: (f, r) => (f.jobs.length === 0 ? undefined : result(f, r, r.pick(f.jobs).jobId, 1000 + r.int(0, 1e6), 1, 'done')),
      expect: { answer: true, check: noTaskHandedOut },
    },
    {
      label: 'a finished task again (duplicated result)',
      make: (f, r) => {
        const t = finishedTasks(f);
        if (t.length === 0) return undefined;
        const x = r.pick(t);
        return result(f, r, x.jobId, x.taskIndex, x.attempt, x.state === 'failed' ? 'failed' : 'done');
      },
      expect: { answer: true, check: noTaskHandedOut },
    },
    {
      label: 'a finished task, an attempt it never had',
      make: (f, r) => {
        const t = finishedTasks(f);
        if (t.length === 0) return undefined;
        const x = r.pick(t);
        return result(f, r, x.jobId, x.taskIndex, x.attempt + r.int(1, 5), r.pick(['done', 'failed']));
      },
      expect: { answer: true, check: noTaskHandedOut },
    },
    {
      label: 'a finished task, an older attempt',
      make: (f, r) => {
        const t = finishedTasks(f).filter((x) => x.attempt > 1);
        if (t.length === 0) return undefined;
        const x = r.pick(t);
        return result(f, r, x.jobId, x.taskIndex, r.int(1, x.attempt - 1), r.pick(['done', 'failed']));
      },
      expect: { answer: true, check: noTaskHandedOut },
    },
    {
      label: 'a done task reported failed afterwards (out of order)',
      make: (f, r) => {
        const t = finishedTasks(f).filter((x) => x.state === 'done');
        if (t.length === 0) return undefined;
        const x = r.pick(t);
        return result(f, r, x.jobId, x.taskIndex, x.attempt, 'failed');
      },
      expect: { answer: true, check: noTaskHandedOut },
    },
    {
      label: 'a task never dispatched',
      make: (f, r) => {
        const t = f.jobs.flatMap((j) => j.tasks.filter((x) => x.attempt === 0).map((x) => ({ jobId: j.jobId, ...x })));
        if (t.length === 0) return undefined;
        const x = r.pick(t);
        return result(f, r, x.jobId, x.taskIndex, r.int(1, 3), r.pick(['done', 'failed']));
      },
      expect: { answer: true, check: noTaskHandedOut },
    },
  ],
  AssignRequest: [
    { label: 'another host in the message', make: () => ({ v: PROTOCOL_MAJOR, host: ghost, assignments: [assignment(noJob, 0, 0)] }), expect: { refuse: 'RB_UNKNOWN_HOST' } },
    {
      label: 'slots this host does not have',
      make: (f, r) => ({ v: PROTOCOL_MAJOR, host: f.host, assignments: Array.from({ length: r.int(1, 4) }, (_, i) => assignment(`fuzz-${r.string(6)}`, i, f.slotCount + r.int(0, 2000))) }),
      expect: { answer: true, check: nothingAccepted },
    },
    {
      label: 'one task twice, to a slot this host does not have',
      make: (f) => ({ v: PROTOCOL_MAJOR, host: f.host, assignments: [assignment(noJob, 0, f.slotCount), assignment(noJob, 0, f.slotCount)] }),
      expect: { answer: true, check: nothingAccepted },
    },
    {
      label: "a finished task again, to a slot this host does not have",
      make: (f, r) => {
        const t = finishedTasks(f);
        if (t.length === 0) return undefined;
        const x = r.pick(t);
        return { v: PROTOCOL_MAJOR, host: f.host, assignments: [{ ...assignment(x.jobId, x.taskIndex, f.slotCount + 1), attempt: x.attempt }] };
      },
      expect: { answer: true, check: nothingAccepted },
    },
  ],
  HostCtl: [
    { label: 'kill an unknown task', make: (_f, r) => ({ v: PROTOCOL_MAJOR, action: 'kill-task', taskId: `fuzz-${r.string(8)}.0` }), expect: { refuse: 'RB_NO_SUCH_SLOT' } },
    { label: 'kill without a task id', make: () => ({ v: PROTOCOL_MAJOR, action: 'kill-task' }), expect: { refuse: 'RB_NO_SUCH_SLOT' } },
    ...HOSTILE_IDS.map((taskId): SemanticCase => ({ label: `kill task '${taskId}'`, make: () => ({ v: PROTOCOL_MAJOR, action: 'kill-task', taskId }), expect: { refuse: 'RB_NO_SUCH_SLOT' } })),
    { label: 'kill a near-limit task id', make: () => ({ v: PROTOCOL_MAJOR, action: 'kill-task', taskId: FILL }), expect: { refuse: 'RB_NO_SUCH_SLOT' }, once: true },
    // the server under test never drains (that would change the farm): undraining it changes nothing
    { label: 'undrain a server that is not draining', make: () => ({ v: PROTOCOL_MAJOR, action: 'undrain' }), expect: { answer: true, check: ctlAnswered('undrain') } },
    { label: 'undrain with a task id and an attempt', make: (_f, r) => ({ v: PROTOCOL_MAJOR, action: 'undrain', taskId: `fuzz-${r.string(8)}.0`, attempt: r.int(1, 9) }), expect: { answer: true, check: ctlAnswered('undrain') } },
    { label: 'undrain, misspelt', make: (_f, r) => ({ v: PROTOCOL_MAJOR, action: r.pick(['Undrain', 'un-drain', 'undrain ', 'resume']) }), expect: { refuse: 'RB_SCHEMA_MISMATCH' } },
  ],
};

/** A control request answered for what it asked. */
function ctlAnswered(action: string): (body: unknown) => string | undefined {
  return (body) => ((body as { action?: unknown }).action === action ? undefined : `answered for another action: ${JSON.stringify(body).slice(0, 200)}`);
}

function nothingAccepted(body: unknown): string | undefined {
  const b = body as { accepted?: unknown[]; rejected?: { code?: string; message?: string }[] };
  if ((b.accepted ?? []).length > 0) return `the render server accepted ${JSON.stringify(b.accepted).slice(0, 200)}`;
  const bad = (b.rejected ?? []).find((x) => !x.code?.startsWith('RB_') || !x.message);
  if (bad) return `a rejection without an RB_ code and a message: ${JSON.stringify(bad)}`;
  if ((b.rejected ?? []).length === 0) return 'neither accepted nor rejected';
  return undefined;
}

const STRING_GUESSES = ['fuzz', 'a', '1', '1x1', 'f_#', 'http://fuzz', '/fuzz', 'fuzz@1'];

/**
 * A small valid value for a schema, for request schemas without a base message above (a subject
 * added to the catalog later still gets mutated cases). Undefined when it cannot make one.
 */
export function exampleFor(s: TSchema): unknown {
  const k = (s as { [Kind]?: string })[Kind];
  const any = s as Record<string, unknown>;
  switch (k) {
    case 'Literal':
      return any.const;
    case 'String': {
      const min = typeof any.minLength === 'number' ? any.minLength : 0;
      if (typeof any.pattern === 'string') {
        const re = new RegExp(any.pattern);
        return STRING_GUESSES.find((g) => re.test(g) && g.length >= min);
      }
      return 'fuzz'.padEnd(min, 'z');
    }
    case 'Integer':
    case 'Number':
      return typeof any.minimum === 'number' ? any.minimum : 0;
    case 'Boolean':
      return false;
    case 'Null':
      return null;
    case 'Array': {
      const n = typeof any.minItems === 'number' ? any.minItems : 0;
      const items = Array.from({ length: n }, () => exampleFor(any.items as TSchema));
      return items.some((x) => x === undefined) ? undefined : items;
    }
    case 'Object': {
      const out: Record<string, unknown> = {};
      const props = (any.properties ?? {}) as Record<string, TSchema>;
      for (const name of (any.required as string[] | undefined) ?? []) {
        const v = exampleFor(props[name]!);
        if (v === undefined) return undefined;
        out[name] = v;
      }
      return out;
    }
    case 'Union':
      for (const b of any.anyOf as TSchema[]) {
        const v = exampleFor(b);
        if (v !== undefined) return v;
      }
      return undefined;
    default:
      return undefined;
  }
}

/** Every string with a `pattern` in a schema, with where it sits (array items at index 0). */
export function patternFields(s: TSchema, path: (string | number)[] = [], out: { path: (string | number)[]; pattern: string }[] = []) {
  const k = (s as { [Kind]?: string })[Kind];
  const any = s as Record<string, unknown>;
  if (k === 'String' && typeof any.pattern === 'string') out.push({ path, pattern: any.pattern });
  else if (k === 'Object') for (const [name, p] of Object.entries((any.properties ?? {}) as Record<string, TSchema>)) patternFields(p, [...path, name], out);
  else if (k === 'Union') for (const b of any.anyOf as TSchema[]) patternFields(b, path, out);
  else if (k === 'Array') patternFields(any.items as TSchema, [...path, 0], out);
  return out;
}
