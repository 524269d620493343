import { hostname } from 'node:os';
import { jetstream, JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { createActor, fromPromise, waitFor } from 'xstate';
import { replicasOf } from '../bus/index.ts';
import { codecs, newInstanceId, PROTOCOL_MAJOR, streams, type LeaderRole, type Leadership } from '../../protocol/index.ts';
import { readKey } from './leases.ts';
import { DEFAULT_LEADERSHIP_TIMING, LeaseTakenError, leadershipMachine, type KeyState, type LeadershipTiming } from './machine.ts';

/**
 * Whether the lease still holds right now: a renewal sent less than fenceMs ago was stored. A term
 * asks before it acts, so a process that was frozen (SIGSTOP, a VM paused) does not act on a lease
 * another candidate may have taken meanwhile, in the moment before its fence timer fires.
 */
export interface LeaseCheck {
  valid(): boolean;
}

/** A leader's term: what this process runs while it leads. Stopped when the lease is lost or the process stops. */
export interface LeaderTerm {
  stop(): Promise<void>;
  /** No renewal was stored for the fence: stop acting until `resume` (with `holdAtFence`). */
  hold?(): void;
  /** A renewal was stored again and nobody claimed the lease meanwhile: act again. */
  resume?(): void;
}

export interface LeadershipOptions {
  nc: NatsConnection;
  site: string;
  role: LeaderRole;
  /** The candidate's name on the bus (its credential's), shown to operators. */
  name?: string;
  log: Logger;
  /** Replicas of the leaders bucket (default: as the server says, replicasOf: 3 on a cluster of three, else 1). */
  replicas?: number;
  timing?: Partial<LeadershipTiming>;
  /** Hold the term at the fence instead of ending it (machine.ts, `holdAtFence`): the scheduler's, whose restart replays its journal. */
  holdAtFence?: boolean;
  /** Starts this process's term as the leader; `lease.valid()` says, at the moment of acting, whether the lease still holds. */
  lead: (lease: LeaseCheck) => Promise<LeaderTerm>;
}

export interface LeadershipHandle {
  /** Settles once this candidate leads (its term started) or knows another does; rejects when its term could not start. */
  readonly settled: Promise<'leading' | 'standby'>;
  /** As `settled`, or 'unsettled' after `ms` (the bus or its store is away: the candidate keeps trying). */
  settledWithin(ms: number): Promise<'leading' | 'standby' | 'unsettled'>;
  leading(): boolean;
  /** Ends the term if one runs and gives the lease up, so a standby takes over at once. */
  stop(): Promise<void>;
}

const STOPPING = 'the process stops';

/** The unit of the bucket's request timeouts (5× for a KV request; a stop waits 2× for its release): the fence does not wait for a slow renewal. */
const KV_TIMEOUT_MS = 1_000;

/**
 * Runs for a site's leadership (scheduler or registry) through a key of the site's leaders
 * bucket in JetStream, and runs `lead` while it holds the lease (actors/leadership/machine.ts).
 * nats-server 2.9.10 has no per-key TTL: a lease lapses when its revision stops changing.
 */
export async function runForLeadership(o: LeadershipOptions): Promise<LeadershipHandle> {
  const timing = { ...DEFAULT_LEADERSHIP_TIMING, ...o.timing };
  const log = o.log.child({ leadership: o.role });
  const holder = newInstanceId();
  const since = Date.now();
  const key = o.role;
  let kv: KV | null = null;
  const value = (): Uint8Array => {
    const lease: Leadership = { v: PROTOCOL_MAJOR, role: o.role, holder, host: hostname(), pid: process.pid, since, renewedAt: Date.now(), ...(o.name ? { name: o.name } : {}) };
    return codecs.leadership.encode(lease);
  };
  const taken = (err: unknown): unknown =>
    err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
      ? new LeaseTakenError(`the ${o.role} lease was taken by another candidate`, { cause: err })
      : err;
  const write = async (expect: number) => {
    const sentAt = Date.now();
    try {
      const revision = expect === 0 ? await kv!.create(key, value()) : await kv!.update(key, value(), expect);
      return { revision, sentAt };
    } catch (err) {
      throw taken(err);
    }
  };

  let term: Promise<LeaderTerm | null> | null = null;
  let heldSince = 0;
  /** The last term's stop: a new term starts only after it (never two terms in one process). */
  let stopped: Promise<void> = Promise.resolve();
  let settle: (s: 'leading' | 'standby') => void = () => {};
  let fail: (err: unknown) => void = () => {};
  const settled = new Promise<'leading' | 'standby'>((resolve, reject) => {
    settle = resolve;
    fail = reject;
  });
  const endTerm = (why: string): Promise<void> => {
    const t = term;
    term = null;
    stopped = (async () => {
      const running = await t;
      if (!running) return;
      log[why === STOPPING ? 'info' : 'warn']({ why }, `stepping down as ${o.role}`);
      await running.stop().catch((err: unknown) => log.error({ err }, 'the term did not stop cleanly'));
    })();
    return stopped;
  };

  const machine = leadershipMachine.provide({
    actors: {
      open: fromPromise(async () => {
        const js = jetstream(o.nc, { timeout: KV_TIMEOUT_MS * 5 });
        kv = await new Kvm(js).create(streams.leaders(o.site), { history: 1, replicas: o.replicas ?? replicasOf(o.nc) });
      }),
      read: fromPromise((): Promise<KeyState> => readKey(kv!, key)),
      claim: fromPromise(({ input }) => write(input.expect)),
      renew: fromPromise(({ input }) => write(input.revision)),
      release: fromPromise(async ({ input }) => {
        await kv!.delete(key, { previousSeq: input.revision });
      }),
    },
    actions: {
      won: () => {
        log.info({ holder }, `leading as ${o.role}`);
        term = stopped.then(() => o.lead(check)).then(
          (t) => {
            settle('leading');
            return t;
          },
          (err: unknown) => {
            // a term that cannot start gives the lease up: another candidate may do better
            log.error({ err }, `could not start as ${o.role}; giving the lease up`);
            fail(err);
            actor.send({ type: 'leadership.release' });
            return null;
          },
        );
      },
      lost: () => {
        void endTerm('the lease was lost (taken by another candidate, or not renewed in time)');
      },
      held: () => {
        heldSince = Date.now();
        log.warn({ fenceMs: timing.fenceMs }, `no lease renewal stored for the fence: the ${o.role} holds still until one is (or steps down if another took the lease)`);
        void term?.then((t) => t?.hold?.());
      },
      resumed: () => {
        log.info({ heldMs: Date.now() - heldSince }, `lease renewed again, nobody claimed it meanwhile: the ${o.role} goes on`);
        void term?.then((t) => t?.resume?.());
      },
      reportOpenFailure: ({ event }) => log.warn({ err: (event as { error?: unknown }).error }, 'the leaders bucket is unavailable; retrying'),
    },
  });
  const check: LeaseCheck = {
    valid: () => {
      const s = actor.getSnapshot();
      return s.matches('leading') && Date.now() - s.context.renewedSentAt < timing.fenceMs;
    },
  };
  const actor = createActor(machine, {
    input: {
      holder,
      timing,
      now: Date.now,
      holdAtFence: o.holdAtFence === true,
      deadHere: (l) => l.host === hostname() && l.pid !== process.pid && !processExists(l.pid),
    },
  });
  actor.subscribe({
    next: (s) => {
      if (s.matches('following') && s.context.seen !== null) settle('standby');
    },
    error: (err) => log.error({ err }, 'leadership machine failed'),
  });
  actor.start();

  let stopping: Promise<void> | null = null;
  settled.catch(() => {}); // a caller that stopped waiting is not told by an unhandled rejection
  return {
    settled,
    settledWithin: (ms) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'unsettled'>((resolve) => (timer = setTimeout(() => resolve('unsettled'), ms)));
      return Promise.race([settled, late]).finally(() => clearTimeout(timer));
    },
    leading: () => actor.getSnapshot().matches('leading') && term !== null,
    stop() {
      stopping ??= (async () => {
        const wasLeading = actor.getSnapshot().matches('leading');
        await endTerm(STOPPING);
        if (wasLeading) {
          actor.send({ type: 'leadership.release' });
          await waitFor(actor, (s) => s.status === 'done', { timeout: KV_TIMEOUT_MS * 2 }).catch(() => {});
        }
        actor.send({ type: 'leadership.stop' });
        actor.stop();
        settle('standby');
      })();
      return stopping;
    },
  };
}

/** Whether a process of this machine exists (EPERM: it does, as another user's). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
