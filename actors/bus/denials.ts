import { PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { FarmError, describePrincipal, type Principal } from '../../protocol/index.ts';

interface Watch {
  who: Principal;
  /** Requests waiting on a subject: told at once when the server refuses a publish there. */
  waiting: Map<string, Set<(err: FarmError) => void>>;
}

const watches = new WeakMap<NatsConnection, Watch>();

/**
 * Follows the publishes the server refuses this connection. A request on a subject the credential
 * may not use gets no answer (the server drops it and says so out of band): `call` waits here too,
 * so it fails at once with "this credential may not" instead of a time-out.
 */
export function watchDenials(nc: NatsConnection, who: Principal, log?: Logger): void {
  const w: Watch = { who, waiting: new Map() };
  watches.set(nc, w);
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type !== 'error' || !(s.error instanceof PermissionViolationError)) continue;
      const e = s.error;
      log?.warn({ operation: e.operation, subject: e.subject }, 'the NATS server refused this credential');
      if (e.operation !== 'publish') continue;
      const err = new FarmError('RB_FORBIDDEN', `the NATS server refused ${e.subject} to this credential (${describePrincipal(who)})`);
      for (const tell of w.waiting.get(e.subject) ?? []) tell(err);
    }
  })();
}

/**
 * The client may itself fail a request the server refused (a RequestError naming the permission
 * violation): the same RB_FORBIDDEN, naming whose credential it was. Null for any other failure.
 */
export function asRefusal(nc: NatsConnection, subject: string, cause: unknown): FarmError | null {
  if (cause instanceof FarmError) return cause.code === 'RB_FORBIDDEN' ? cause : null;
  const text = `${(cause as Error)?.message ?? ''} ${((cause as Error)?.cause as Error | undefined)?.message ?? ''}`;
  if (!/permissions violation/i.test(text)) return null;
  const who = watches.get(nc)?.who;
  return new FarmError('RB_FORBIDDEN', `the NATS server refused ${subject} to this credential${who ? ` (${describePrincipal(who)})` : ''}`, { cause });
}

/** Settles (rejects) when the server refuses a publish on `subject`; `done()` stops waiting. */
export function refusal(nc: NatsConnection, subject: string): { refused: Promise<never>; done(): void } {
  const w = watches.get(nc);
  let tell: ((err: FarmError) => void) | null = null;
  const refused = new Promise<never>((_, reject) => {
    tell = reject;
  });
  refused.catch(() => {}); // only read when raced
  if (!w) return { refused, done: () => {} };
  const set = w.waiting.get(subject) ?? new Set();
  w.waiting.set(subject, set);
  set.add(tell!);
  return {
    refused,
    done: () => {
      set.delete(tell!);
      if (set.size === 0) w.waiting.delete(subject);
    },
  };
}
