import { describePrincipal, permissionsFor, Role, subjects, type Principal } from '../../protocol/index.ts';

/*
 * Who the fuzzer is when it sends on each subject of the catalog. The bus is authenticated: the
 * server delivers a message only from a credential whose role may publish its subject, and the
 * per-caller subjects end in the sender's identity (`sched.result.<host>`, `sched.submit.<user>`).
 * So each subject is fuzzed as the role that owns it, with that role's identity token, and what
 * is tested is the actor's own validation, not the server's permissions.
 */

/** Names the fuzzer's principals take: the farm's render server, and `user` for the rest. */
export interface SenderNames {
  site: string;
  /** The render server under test: its own subjects are sent with its credential. */
  host: string;
  /** The artist and operator the fuzzer acts as (the farm's jobs should be this user's), and its service principals' name. */
  user: string;
}

type Who = 'host' | 'artist' | 'operator' | typeof Role.Scheduler | typeof Role.Registry | typeof Role.Notifier | typeof Role.Intake | typeof Role.SiteLink;

interface Route {
  who: Who;
  /** The subject with the sender's identity token, from the template filled in; the filled template itself when absent. */
  subject?: (n: SenderNames, filled: string) => string;
}

/**
 * Catalog subjects (without a trailing identity placeholder, so that the table holds whether the
 * catalog spells `.<host>`/`.<user>` or not) → who sends on them.
 */
const ROUTES: Record<string, Route> = {
  // requests
  'rb.<site>.reg.register': { who: 'host', subject: (n) => subjects.regRegister(n.site, n.host) },
  'rb.<site>.reg.heartbeat': { who: 'host', subject: (n) => subjects.regHeartbeat(n.site, n.host) },
  'rb.<site>.reg.bye': { who: 'host', subject: (n) => subjects.regBye(n.site, n.host) },
  'rb.<site>.reg.match': { who: Role.Scheduler },
  'rb.<site>.reg.list': { who: 'artist' },
  'rb.<site>.sched.submit': { who: 'artist', subject: (n) => subjects.schedSubmit(n.site, n.user) },
  'rb.<site>.sched.query': { who: 'artist' },
  'rb.<site>.sched.ctl': { who: 'artist', subject: (n) => subjects.schedCtl(n.site, n.user) },
  'rb.<site>.sched.limits': { who: 'artist' },
  'rb.<site>.sched.shares': { who: 'artist' },
  'rb.<site>.sched.budgets': { who: 'artist' },
  'rb.<site>.sched.hosts': { who: 'artist' },
  'rb.<site>.sched.result': { who: 'host', subject: (n) => subjects.schedResult(n.site, n.host) },
  'rb.<site>.sched.intake.<peer>': { who: Role.Intake },
  'rb.<site>.sched.remote.<peer>': { who: Role.Intake },
  'rb.<site>.sched.load': { who: Role.SiteLink },
  'rb.<site>.host.<host>.assign': { who: Role.Scheduler },
  'rb.<site>.host.<host>.ctl': { who: 'operator' },
  'rb.<site>.op.ctl': { who: 'operator' },
  'rb.<site>.op.limits': { who: 'operator' },
  'rb.<site>.op.shares': { who: 'operator' },
  'rb.<site>.op.budgets': { who: 'operator' },
  'rb.<site>.op.hosts': { who: 'operator' },
  // events
  'rb.<site>.reg.hello': { who: Role.Registry },
  'rb.<site>.sched.leases': { who: 'host', subject: (n) => subjects.schedLeases(n.site, n.host) },
  'rb.<site>.sched.hello': { who: Role.Scheduler },
  'rb.<site>.evt.job.<job>.<event>': { who: Role.Scheduler },
  'rb.<site>.evt.frame.<job>.<frame>.<event>': { who: Role.Scheduler },
  'rb.<site>.evt.notify.<job>.<event>': { who: Role.Notifier },
  'rb.<site>.evt.host.<host>.<event>': { who: 'host' },
};

/**
 * Request subjects the scheduler serves beside the catalog's: an operator's twin of an owner's
 * request, the same messages without the owner's check. Fuzzed with the twin's schemas unless
 * the catalog lists them itself.
 */
export const OPERATOR_TWINS: Record<string, string> = {
  'rb.<site>.op.ctl': 'rb.<site>.sched.ctl',
  'rb.<site>.op.limits': 'rb.<site>.sched.limits',
  'rb.<site>.op.shares': 'rb.<site>.sched.shares',
  'rb.<site>.op.budgets': 'rb.<site>.sched.budgets',
  'rb.<site>.op.hosts': 'rb.<site>.sched.hosts',
};

const routeOf = (template: string): Route | undefined => ROUTES[template.replace(/\.<(host|user)>$/, '')];

function principal(who: Who, n: SenderNames): Principal {
  switch (who) {
    case 'host':
      return { role: Role.RenderServer, name: n.host };
    case 'artist':
      return { role: Role.Artist, name: n.user };
    case 'operator':
      return { role: Role.Operator, name: n.user };
    default:
      return { role: who, name: n.user };
  }
}

export interface Sender {
  as: Principal;
  /** The subject to send on, identity token included. */
  subject: string;
}

/**
 * The sender of a catalog subject, its template already filled in (`filled`); or why there is
 * none: nobody in the table, or the table's sender may not publish there (protocol/roles.ts).
 */
export function senderFor(template: string, filled: string, n: SenderNames): Sender | { problem: string } {
  const route = routeOf(template);
  if (!route) return { problem: `the fuzzer does not know who sends on ${template}: teach tools/chaos/fuzz-senders.ts` };
  const as = principal(route.who, n);
  const subject = route.subject ? route.subject(n, filled) : filled;
  if (!mayPublish(n.site, as, subject)) return { problem: `${describePrincipal(as)} may not publish ${subject} (protocol/roles.ts), yet it is the one that sends there` };
  return { as, subject };
}

/** Every principal the fuzzer may send as, for a farm that issues credentials up front. */
export function fuzzPrincipals(n: Omit<SenderNames, 'site'>): Principal[] {
  const seen = new Map<string, Principal>();
  for (const r of Object.values(ROUTES)) {
    const p = principal(r.who, { ...n, site: 'x' });
    seen.set(`${p.role}/${p.name}`, p);
  }
  return [...seen.values()];
}

/** Whether the server lets this principal publish on `subject`. */
export function mayPublish(site: string, p: Principal, subject: string): boolean {
  return permissionsFor(site, p).publish.some((pattern) => subjectMatches(pattern, subject));
}

/** NATS wildcard matching: `*` one token, `>` the rest. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
