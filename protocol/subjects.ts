import { FarmError } from './errors.ts';

const TOKEN = /^[a-z0-9][a-z0-9_-]*$/;

/** Checks one subject token: lower-case letters, digits, '-' and '_'. */
export function token(what: string, v: string): string {
  if (typeof v !== 'string' || !TOKEN.test(v) || v.length > 64) {
    throw new FarmError('RB_BAD_SUBJECT_TOKEN', `${what} '${String(v)}' is not a subject token (a-z, 0-9, '-', '_', at most 64)`);
  }
  return v;
}

export function isToken(v: string): boolean {
  return TOKEN.test(v) && v.length <= 64;
}

/** Any host name made into a subject token: lower-case, anything else becomes '-'. */
export function hostToken(name: string): string {
  const t = name
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-')
    .replace(/^[-_]+/, '')
    .slice(0, 64)
    .replace(/[-_]+$/, '');
  return t === '' ? 'host' : t;
}

const root = (site: string) => `rb.${token('site', site)}`;

/** The only place a subject string is assembled (DESIGN §2; docs/protocol.md). */
export const subjects = {
  // registry protocol
  regHello: (site: string) => `${root(site)}.reg.hello`,
  // a render server's own requests name its host: the server's permissions let a host's credential
  // publish only its own, so the token is the sender's identity (docs/security.md)
  regRegister: (site: string, host: string) => `${root(site)}.reg.register.${token('host', host)}`,
  regHeartbeat: (site: string, host: string) => `${root(site)}.reg.heartbeat.${token('host', host)}`,
  regBye: (site: string, host: string) => `${root(site)}.reg.bye.${token('host', host)}`,
  allRegRegister: (site: string) => `${root(site)}.reg.register.*`,
  allRegHeartbeat: (site: string) => `${root(site)}.reg.heartbeat.*`,
  allRegBye: (site: string) => `${root(site)}.reg.bye.*`,
  regMatch: (site: string) => `${root(site)}.reg.match`,
  regList: (site: string) => `${root(site)}.reg.list`,
  // scheduler requests
  // submit and steer as a user: the last token is the caller's user, which its credential fixes
  schedSubmit: (site: string, user: string) => `${root(site)}.sched.submit.${token('user', user)}`,
  schedCtl: (site: string, user: string) => `${root(site)}.sched.ctl.${token('user', user)}`,
  allSchedSubmit: (site: string) => `${root(site)}.sched.submit.*`,
  allSchedCtl: (site: string) => `${root(site)}.sched.ctl.*`,
  schedQuery: (site: string) => `${root(site)}.sched.query`,
  schedResult: (site: string, host: string) => `${root(site)}.sched.result.${token('host', host)}`,
  allSchedResults: (site: string) => `${root(site)}.sched.result.*`,
  schedLimits: (site: string) => `${root(site)}.sched.limits`,
  schedHosts: (site: string) => `${root(site)}.sched.hosts`,
  schedShares: (site: string) => `${root(site)}.sched.shares`,
  schedBudgets: (site: string) => `${root(site)}.sched.budgets`,
  // leases: render servers report theirs; a scheduler asks for reports when it (re)starts
  schedLeases: (site: string, host: string) => `${root(site)}.sched.leases.${token('host', host)}`,
  allSchedLeases: (site: string) => `${root(site)}.sched.leases.*`,
  schedHello: (site: string) => `${root(site)}.sched.hello`,
  // operators: the same requests without the owner's check, and the changes of limits, shares and
  // sick hosts; only operator credentials (and the monitor's) may publish here
  opCtl: (site: string) => `${root(site)}.op.ctl`,
  opLimits: (site: string) => `${root(site)}.op.limits`,
  opShares: (site: string) => `${root(site)}.op.shares`,
  opBudgets: (site: string) => `${root(site)}.op.budgets`,
  opHosts: (site: string) => `${root(site)}.op.hosts`,
  // one render server
  hostAssign: (site: string, host: string) => `${root(site)}.host.${token('host', host)}.assign`,
  hostCtl: (site: string, host: string) => `${root(site)}.host.${token('host', host)}.ctl`,
  // events
  jobEvent: (site: string, jobId: string, event: string) => `${root(site)}.evt.job.${token('job', jobId)}.${token('event', event)}`,
  frameEvent: (site: string, jobId: string, frame: number, event: string) =>
    `${root(site)}.evt.frame.${token('job', jobId)}.${frameToken(frame)}.${token('event', event)}`,
  hostEvent: (site: string, host: string, event: string) => `${root(site)}.evt.host.${token('host', host)}.${token('event', event)}`,
  /** The notifier: a notification sent or given up (event: sent, failed). */
  notifyEvent: (site: string, jobId: string, event: string) => `${root(site)}.evt.notify.${token('job', jobId)}.${token('event', event)}`,
  // wildcards for subscribers
  allEvents: (site: string) => `${root(site)}.evt.>`,
  allHostSlotEvents: (site: string) => `${root(site)}.evt.host.*.slot`,
  allHostEvents: (site: string) => `${root(site)}.evt.host.*.*`,
  jobEvents: (site: string, jobId: string) => `${root(site)}.evt.job.${token('job', jobId)}.*`,
  allJobEvents: (site: string) => `${root(site)}.evt.job.*.*`,
  /** One frame event of every job, e.g. 'done'. */
  allFrameEvents: (site: string, event: string) => `${root(site)}.evt.frame.*.*.${token('event', event)}`,
  allNotifyEvents: (site: string) => `${root(site)}.evt.notify.*.*`,
  jobFrameEvents: (site: string, jobId: string) => `${root(site)}.evt.frame.${token('job', jobId)}.>`,
  /** One frame event of one job's frames, e.g. 'stats'. */
  jobFrameEventsOf: (site: string, jobId: string, event: string) => `${root(site)}.evt.frame.${token('job', jobId)}.*.${token('event', event)}`,
  /** What the site's event stream keeps for replay: job events, frame outcomes, hosts coming and going. */
  storedEvents: (site: string) => [
    `${root(site)}.evt.job.>`,
    `${root(site)}.evt.frame.*.*.done`,
    `${root(site)}.evt.frame.*.*.failed`,
    `${root(site)}.evt.host.*.up`,
    `${root(site)}.evt.host.*.down`,
  ],
  // scheduler's durable journal (JetStream)
  journal: (site: string, kind: string) => `${root(site)}.journal.${token('kind', kind)}`,
  allJournal: (site: string) => `${root(site)}.journal.>`,
  // a site's links (sites/links): the state of every peer's link, asked by `renderbus sites`
  linkStatus: (site: string) => `${root(site)}.link.status`,
  // an operator lifts a peer's quarantine (`renderbus site release <peer>`): operators only
  linkRelease: (site: string) => `${root(site)}.link.release`,
  // the scheduler asks its site's services to quote a `site: auto` job at every linked peer (sites/quotes)
  linkQuotes: (site: string) => `${root(site)}.link.quotes`,
  // a site's quote service asks its scheduler how loaded the queue is (frames ahead, measured frame time)
  schedLoad: (site: string) => `${root(site)}.sched.load`,
  // the site's intake (sites/intake): a peer's job submitted for it, and news of a job we sent to a
  // peer; the last token is the peer, and only the intake's credential may publish these
  schedIntake: (site: string, peer: string) => `${root(site)}.sched.intake.${token('site', peer)}`,
  allSchedIntake: (site: string) => `${root(site)}.sched.intake.*`,
  schedRemote: (site: string, peer: string) => `${root(site)}.sched.remote.${token('site', peer)}`,
  allSchedRemote: (site: string) => `${root(site)}.sched.remote.*`,
  // federation (docs/federation.md): `<to>` receives, `<from>` sends. The sender token is proof of
  // origin: the receiving server takes `rb.fed.<us>.<peer>.>` only from the peer's DMZ account
  /** Live (lossy) traffic from site `from` to site `to`: link hellos, job progress. */
  fed: (to: string, from: string, rest: string) => `rb.fed.${token('site', to)}.${token('site', from)}.${fedRest(rest)}`,
  /** Everything site `from` sends to site `to` on core NATS. */
  allFed: (to: string, from: string) => `rb.fed.${token('site', to)}.${token('site', from)}.>`,
  /** A request served by site `to` and made by site `from` (quote, cancel, ping, have). */
  fedSvc: (to: string, from: string, verb: string) => `rb.fedsvc.${token('site', to)}.${token('site', from)}.${token('verb', verb)}`,
  /** Every request site `from` may make of site `to`. */
  allFedSvc: (to: string, from: string) => `rb.fedsvc.${token('site', to)}.${token('site', from)}.>`,
  /** The link's durable pipe (sites/links): one bundle's message `kind` from `from` to `to`, in `from`'s outbox. */
  fedQueue: (from: string, to: string, key: string, kind: string) => `rbq.${token('site', from)}.${token('site', to)}.b.${token('bundle key', key)}.${token('kind', kind)}`,
  /** Every message of one bundle in `from`'s outbox to `to` (what a receipt purges). */
  fedQueueBundle: (from: string, to: string, key: string) => `rbq.${token('site', from)}.${token('site', to)}.b.${token('bundle key', key)}.>`,
  /** Everything `from`'s outbox to `to` holds. */
  allFedQueue: (from: string, to: string) => `rbq.${token('site', from)}.${token('site', to)}.>`,
};

/** The tail of a federation subject: dot-separated subject tokens. */
function fedRest(rest: string): string {
  for (const t of rest.split('.')) token('federation subject token', t);
  return rest;
}

/** The last token of a subject: the identity a per-caller subject names (`sched.result.<host>`). */
export function lastToken(subject: string): string {
  return subject.slice(subject.lastIndexOf('.') + 1);
}

function frameToken(frame: number): string {
  if (!Number.isInteger(frame) || frame < 0) throw new FarmError('RB_BAD_SUBJECT_TOKEN', `frame '${frame}' is not a frame number`);
  return String(frame);
}

/** Stream names (JetStream allows no dots): one per site. */
export const streams = {
  events: (site: string) => `RB_${token('site', site).toUpperCase().replace(/-/g, '_')}_EVT`,
  journal: (site: string) => `RB_${token('site', site).toUpperCase().replace(/-/g, '_')}_JOURNAL`,
  /** The KV bucket of the site's leadership leases (actors/leadership): its stream is `KV_<bucket>`. */
  leaders: (site: string) => `RB_${token('site', site).toUpperCase().replace(/-/g, '_')}_LEADERS`,
  /** In the DMZ account of one peer: what this site sends it, sourced by the peer's inbox. */
  fedOutbox: 'RBFED_OUT',
  /** In the DMZ account of one peer: what it sent, sourced from its outbox across domains. */
  fedInbox: 'RBFED_IN',
};

/** The subject a leadership key of the site's leaders bucket is written on (roles.ts allows each role its own). */
export function leaderKeySubject(site: string, role: string): string {
  return `$KV.${streams.leaders(site)}.${token('leader role', role)}`;
}
