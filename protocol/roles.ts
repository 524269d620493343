import { FarmError } from './errors.ts';
import { isToken, leaderKeySubject, streams } from './subjects.ts';

/**
 * Who may do what on a site's bus. Each connection logs in with an nkey that the site's
 * nats-server binds to one principal (a role and a name); the server enforces the allow lists
 * below, so a message's subject is proof of who sent it: a render server's credential can publish
 * `sched.result.<its host>` and nothing else of that kind (docs/security.md has the table).
 */
export const Role = {
  /** Submits and steers its own jobs; reads the farm. */
  Artist: 'artist',
  /** Everything an artist does, for every job; steers hosts; changes limits, shares, budgets, sick hosts. */
  Operator: 'operator',
  /** One render host: its own registration, results, lease reports and events. */
  RenderServer: 'render-server',
  Scheduler: 'scheduler',
  Registry: 'registry',
  Notifier: 'notifier',
  /** The monitor and its web pages: reads everything, steers jobs (its HTTP side checks a token). */
  Monitor: 'monitor',
  /** A site's link to its peers: the federation subjects only (docs/federation.md). */
  SiteLink: 'site-link',
  /**
   * A site's intake (sites/intake): submits a peer's job into the queue, reports news of jobs the
   * site sent to peers, and follows job events to send results back.
   */
  Intake: 'intake',
} as const;
export type Role = (typeof Role)[keyof typeof Role];

export const ROLES: readonly Role[] = Object.values(Role);

/** The farm's own actors: the only roles that touch JetStream. */
export const SERVICE_ROLES: readonly Role[] = [Role.Scheduler, Role.Registry, Role.Notifier, Role.Monitor, Role.Intake];

/**
 * A render-server principal named `*` may act for any host. Only simulated farms (many simulated
 * hosts on one connection, for benchmarks and tests) need it; `renderbus credentials` refuses it
 * without `--any-host`.
 */
export const ANY_HOST = '*';

export interface Principal {
  role: Role;
  /** A user name (artists, operators), a host name (render servers), or the service's name. */
  name: string;
}

/** What a connection needs to log in: its principal and the nkey seed (a secret). */
export interface Credentials extends Principal {
  site: string;
  /** The nkey seed, `SU...`: the secret half. */
  seed: string;
  /** Where the farm's NATS server was when the credential was issued (a hint; --nats wins). */
  url?: string;
}

export function isRole(v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v);
}

/** Checks a principal's name: a subject token, or `*` for a render server acting for any host. */
export function checkPrincipal(p: { role: unknown; name: unknown }): Principal {
  if (!isRole(p.role)) throw new FarmError('RB_BAD_CREDENTIALS', `role '${String(p.role)}' is not one of ${ROLES.join(', ')}`);
  const name = String(p.name);
  if (!(isToken(name) || (p.role === Role.RenderServer && name === ANY_HOST))) {
    throw new FarmError('RB_BAD_CREDENTIALS', `name '${name}' of a ${p.role} must be lower-case letters, digits, '-' or '_' (at most 64)`);
  }
  return { role: p.role, name };
}

/**
 * The prefix of the connection's reply subjects. Each principal subscribes only beneath its own,
 * so nobody reads another's replies (a plain `_INBOX.>` allowance would let anyone read them all).
 */
export function inboxPrefix(p: Principal): string {
  const name = p.name === ANY_HOST ? 'any-host' : p.name;
  return `_INBOX.${p.role}.${name}`;
}

export interface Permissions {
  publish: string[];
  subscribe: string[];
  /** May answer requests it received (publish once to each request's reply subject). */
  allowResponses: boolean;
}

/**
 * The allow lists of one principal on one site. Pure data: the nats-server config is generated
 * from it, and docs/security.md describes it. Anything not listed is refused by the server.
 */
export function permissionsFor(site: string, p: Principal): Permissions {
  const r = `rb.${site}`;
  const inbox = `${inboxPrefix(p)}.>`;
  // what any credential of the site may read and ask: events, the queue, hosts, limits, shares, budgets
  const readFarm = [`${r}.sched.query`, `${r}.sched.limits`, `${r}.sched.shares`, `${r}.sched.budgets`, `${r}.sched.hosts`, `${r}.reg.list`, `${r}.link.status`];
  const evStream = streams.events(site);
  switch (p.role) {
    case Role.Artist:
      return {
        publish: [`${r}.sched.submit.${p.name}`, `${r}.sched.ctl.${p.name}`, ...readFarm],
        subscribe: [`${r}.evt.>`, inbox],
        allowResponses: false,
      };
    case Role.Operator:
      return {
        publish: [
          `${r}.sched.submit.${p.name}`, `${r}.sched.ctl.${p.name}`, `${r}.op.>`, `${r}.host.*.ctl`, `${r}.reg.match`, `${r}.link.release`, ...readFarm,
          // who leads (`renderbus leaders`): a read of the leaders bucket, from its stream's leader
          `$JS.API.STREAM.MSG.GET.KV_${streams.leaders(site)}`,
        ],
        // operators tail the whole site (requests included) but answer nothing; `rb.fed.>` in this
        // account is only what crosses this site's links (FARM imports nothing else of the DMZs)
        subscribe: [`${r}.>`, 'rb.fed.>', inbox],
        allowResponses: false,
      };
    case Role.RenderServer: {
      const h = p.name; // '*' for a simulated farm's connection
      return {
        publish: [
          `${r}.reg.register.${h}`,
          `${r}.reg.heartbeat.${h}`,
          `${r}.reg.bye.${h}`,
          `${r}.sched.result.${h}`,
          `${r}.sched.leases.${h}`,
          `${r}.evt.host.${h}.slot`,
          `${r}.evt.host.${h}.draining`,
          `${r}.evt.host.${h}.undrained`,
          // live figures of the frames it runs; outcomes (done, failed) are the scheduler's alone
          `${r}.evt.frame.*.*.started`,
          `${r}.evt.frame.*.*.progress`,
          `${r}.evt.frame.*.*.stats`,
        ],
        subscribe: [`${r}.host.${h}.>`, `${r}.reg.hello`, `${r}.sched.hello`, inbox],
        allowResponses: true,
      };
    }
    case Role.Scheduler:
      return {
        publish: [
          `${r}.evt.job.>`,
          `${r}.evt.frame.>`,
          `${r}.evt.host.*.sick`,
          `${r}.host.*.assign`,
          `${r}.host.*.ctl`,
          `${r}.sched.hello`,
          `${r}.reg.match`,
          `${r}.reg.list`,
          // a `site: auto` job: its site's services ask the linked peers for quotes
          `${r}.link.quotes`,
          `${r}.journal.>`,
          // its leadership key only: a standby takes over when it lapses (actors/leadership)
          leaderKeySubject(site, 'scheduler'),
          '$JS.API.>',
          '$JS.ACK.>',
          '$JS.FC.>',
        ],
        subscribe: [`${r}.sched.>`, `${r}.op.>`, `${r}.evt.host.>`, inbox],
        allowResponses: true,
      };
    case Role.Registry:
      return {
        publish: [
          `${r}.reg.hello`,
          `${r}.evt.host.*.up`,
          `${r}.evt.host.*.down`,
          // its leadership key in the leaders bucket, and of JetStream only what that bucket needs
          leaderKeySubject(site, 'registry'),
          ...leadersBucketApi(site),
        ],
        subscribe: [`${r}.reg.>`, `${r}.evt.host.*.slot`, inbox],
        allowResponses: true,
      };
    case Role.Notifier:
      return {
        // a durable consumer of the event stream, and nothing else of JetStream: it cannot
        // delete or purge a stream, nor read the journal's stream
        publish: [
          `${r}.evt.notify.>`,
          `${r}.sched.query`,
          '$JS.API.INFO',
          `$JS.API.STREAM.INFO.${evStream}`,
          `$JS.API.CONSUMER.*.${evStream}.>`,
          `$JS.API.CONSUMER.*.*.${evStream}.>`,
          `$JS.ACK.${evStream}.>`,
        ],
        subscribe: [`${r}.evt.>`, `${r}.journal.submit`, inbox],
        allowResponses: false,
      };
    case Role.Monitor:
      return {
        publish: [`${r}.op.ctl`, ...readFarm],
        subscribe: [`${r}.evt.>`, inbox],
        allowResponses: false,
      };
    case Role.SiteLink:
      // what this site sends and asks, and what it receives and serves; which peer may see which
      // subjects is the accounts' business (sites/links/nats-config.ts), not this list's
      return {
        // a peer's quote asks the registry for matching hosts and the scheduler for its load
        publish: [`rb.fed.*.${site}.>`, `rb.fedsvc.*.${site}.>`, `${r}.reg.match`, `${r}.sched.load`],
        subscribe: [`rb.fed.${site}.*.>`, `rb.fedsvc.${site}.*.>`, `${r}.link.status`, `${r}.link.release`, `${r}.link.quotes`, inbox],
        allowResponses: true,
      };
    case Role.Intake:
      // like the notifier, a durable consumer of the event stream; and the two scheduler requests
      // only it may make: submit (or cancel) a peer's job, report news of a job sent to a peer; it
      // asks the registry whether any host could render a peer's job before accepting it
      return {
        publish: [
          `${r}.sched.intake.*`,
          `${r}.reg.match`,
          `${r}.sched.remote.*`,
          `${r}.sched.ctl.${p.name}`,
          ...readFarm,
          '$JS.API.INFO',
          `$JS.API.STREAM.INFO.${evStream}`,
          `$JS.API.CONSUMER.*.${evStream}.>`,
          `$JS.API.CONSUMER.*.*.${evStream}.>`,
          `$JS.ACK.${evStream}.>`,
        ],
        subscribe: [`${r}.evt.>`, inbox],
        allowResponses: false,
      };
  }
}

/** The JetStream requests a standby-capable service makes on the leaders bucket: make it, read a key. */
function leadersBucketApi(site: string): string[] {
  const stream = `KV_${streams.leaders(site)}`;
  return [
    '$JS.API.INFO',
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.CREATE.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
  ];
}

/** How a principal is named in messages and logs: `artist ann`, `render-server node-7`. */
export function describePrincipal(p: Principal): string {
  return p.name === ANY_HOST ? `${p.role} (any host)` : `${p.role} ${p.name}`;
}
