import { assign, raise, setup } from 'xstate';
import { LinkState } from '../../protocol/index.ts';

/** How often a link says hello to its peer (core NATS, lossy). */
export const HELLO_EVERY_MS = 2_000;
/** Hellos missed before the peer counts as down. */
export const HELLOS_MISSED = 3;
/** How long the inbox may stand still while the peer says it has sent more, before the link repairs its source. */
export const STALL_AFTER_MS = 30_000;

/** What the peer's hello tells the machine (the runtime has decoded and checked it). */
export interface PeerHello {
  instance: string;
  /** The last sequence of the peer's outbox to us. */
  outSeq: number;
  publicKey: string;
}

export type LinkEvent =
  | { type: 'hello'; hello: PeerHello; at: number }
  /** The highest sequence of the peer's outbox our inbox has handed us (from the sourced messages' header). */
  | { type: 'inbox.taken'; seq: number; at: number }
  /** Bundles in flight either way (0: none). */
  | { type: 'work'; active: number }
  /** The inbox's source reported an error it cannot get past (a poison message). */
  | { type: 'source.error'; reason: string; at: number }
  /** An operator cleared the quarantine: reset the inbox past the bad message. */
  | { type: 'quarantine.clear'; at: number };

export interface LinkContext {
  peer: string;
  /** How long the inbox may bring nothing while the peer says it sent more (STALL_AFTER_MS unless shortened). */
  stallAfterMs: number;
  /** When the link entered its reported state (ms since the epoch, from the events' `at`). */
  since: number;
  lastHelloAt?: number;
  peerInstance?: string;
  publicKey?: string;
  /** The peer's outbox sequence, from its last hello. */
  peerOutSeq: number;
  /** The highest sequence of the peer's outbox we have taken. */
  takenSeq: number;
  /**
   * What the peer had sent when we first heard it (counted as taken: a restarted link cannot tell
   * what its predecessor took, and a stall needs new messages that do not come).
   */
  baseline: number | undefined;
  active: number;
  reason?: string;
}

/**
 * One peer's link, pure (docs/federation.md, "The site link"). Three regions:
 * - `conn`: disconnected → connected (idle ⇄ transferring); a hello connects, and HELLOS_MISSED
 *   periods without one disconnect (what must cross then waits in the outbox);
 * - `beat`: says hello every HELLO_EVERY_MS, up or down (the peer learns we are back at once);
 * - `health`: ok → behind (up, the peer's outbox holds more than we have taken) → stalled
 *   after STALL_AFTER_MS (the runtime recreates the inbox's source) → quarantined when the new
 *   source brings nothing either for another STALL_AFTER_MS, or at once on a source error; a
 *   quarantine lasts until an operator clears it (the inbox is then reset past the bad message).
 * Effects are injected: the runtime provides every action.
 */
export const linkMachine = setup({
  types: {
    context: {} as LinkContext,
    input: {} as { peer: string; now: number; stallAfterMs?: number },
    events: {} as LinkEvent | { type: 'link.lost' },
  },
  actions: {
    sendHello: () => {},
    /** A peer's public key seen for the first time, or changed. */
    peerKey: (_, _key: string) => {},
    /** Delete the drained inbox and create it again, sourcing from where it left off. */
    recreateSource: () => {},
    /** Reset the inbox past the message it could not take. */
    resetInbox: () => {},
    /** The reported state changed (for the log and `link.status`). */
    stateChanged: () => {},
  },
  delays: {
    helloEvery: HELLO_EVERY_MS,
    helloTimeout: HELLO_EVERY_MS * HELLOS_MISSED,
    stallAfter: ({ context }) => context.stallAfterMs,
  },
  guards: {
    keyChanged: ({ context, event }) => event.type === 'hello' && event.hello.publicKey !== context.publicKey,
    // guards see the context before this event's assigns: they read the event itself
    behind: ({ context, event }) => event.type === 'hello' && context.baseline !== undefined && event.hello.outSeq > Math.max(context.takenSeq, context.baseline),
    inboxMoved: ({ context, event }) => event.type === 'inbox.taken' && event.seq > context.takenSeq,
    busy: ({ context }) => context.active > 0,
  },
}).createMachine({
  id: 'siteLink',
  type: 'parallel',
  context: ({ input }) => ({ peer: input.peer, stallAfterMs: input.stallAfterMs ?? STALL_AFTER_MS, since: input.now, peerOutSeq: 0, takenSeq: 0, baseline: undefined, active: 0 }),
  states: {
    // the facts events carry, noted first (regions act in document order); guards elsewhere read the event
    data: {
      initial: 'noting',
      states: {
        noting: {
          on: {
            hello: [
              { guard: 'keyChanged', actions: [assign(helloFields), { type: 'peerKey', params: ({ event }) => event.hello.publicKey }, assign({ publicKey: ({ event }) => event.hello.publicKey })] },
              { actions: assign(helloFields) },
            ],
            'inbox.taken': { actions: assign(({ context, event }) => (event.seq > context.takenSeq ? { takenSeq: event.seq } : {})) },
            work: { actions: assign({ active: ({ event }) => event.active }) },
          },
        },
      },
    },
    conn: {
      initial: 'disconnected',
      states: {
        disconnected: {
          on: { hello: { target: 'connected', actions: [assign({ since: ({ event }) => event.at }), 'stateChanged'] } },
        },
        connected: {
          initial: 'idle',
          on: { 'link.lost': { target: 'disconnected', actions: [assign({ since: ({ context }) => (context.lastHelloAt ?? 0) + HELLO_EVERY_MS * HELLOS_MISSED }), 'stateChanged'] } },
          states: {
            idle: { always: { guard: 'busy', target: 'transferring' } },
            transferring: { always: { guard: ({ context }) => context.active === 0, target: 'idle' } },
          },
        },
      },
    },
    // each hello restarts the wait for the next one; HELLOS_MISSED periods of silence lose the link
    liveness: {
      initial: 'silent',
      states: {
        silent: { on: { hello: 'hearing' } },
        hearing: {
          after: { helloTimeout: { target: 'silent', actions: raise({ type: 'link.lost' }) } },
          on: { hello: { target: 'hearing', reenter: true } },
        },
      },
    },
    beat: {
      initial: 'waiting',
      states: { waiting: { entry: 'sendHello', after: { helloEvery: { target: 'waiting', reenter: true } } } },
    },
    health: {
      initial: 'ok',
      on: { 'source.error': { target: '.quarantined', actions: assign({ reason: ({ event }) => event.reason, since: ({ event }) => event.at }) } },
      states: {
        ok: {
          on: {
            hello: { guard: 'behind', target: 'behind' },
          },
        },
        behind: {
          after: { stallAfter: { target: 'stalled', actions: assign({ reason: ({ context }) => `the inbox has brought nothing for ${context.stallAfterMs / 1000} s while ${context.peer} says its outbox is at ${context.peerOutSeq} and we have taken ${context.takenSeq}` }) } },
          on: {
            'inbox.taken': { guard: 'inboxMoved', target: 'ok' },
            'link.lost': 'ok',
          },
        },
        stalled: {
          entry: ['recreateSource', 'stateChanged'],
          // a new source that brings nothing either: a message the inbox cannot take (a poison
          // message: nats-server 2.9.10 reports it only in its log, the source's lag stays 0)
          after: {
            stallAfter: {
              target: 'quarantined',
              actions: assign({
                reason: ({ context }) => `the inbox has brought nothing from ${context.peer} for ${(2 * context.stallAfterMs) / 1000} s, even after its source was recreated, while ${context.peer} says its outbox is at ${context.peerOutSeq} and we have taken ${context.takenSeq}: likely a message it cannot carry (larger than our max_payload)`,
              }),
            },
          },
          on: {
            'inbox.taken': { guard: 'inboxMoved', target: 'ok', actions: [assign({ reason: undefined }), 'stateChanged'] },
            'link.lost': { target: 'ok', actions: assign({ reason: undefined }) },
          },
        },
        quarantined: {
          entry: 'stateChanged',
          on: {
            'source.error': {},
            'quarantine.clear': { target: 'ok', actions: ['resetInbox', assign({ reason: undefined, since: ({ event }) => event.at }), 'stateChanged'] },
          },
        },
      },
    },
  },
});

function helloFields({ context, event }: { context: LinkContext; event: LinkEvent | { type: 'link.lost' } }): Partial<LinkContext> {
  if (event.type !== 'hello') return {};
  return { lastHelloAt: event.at, peerInstance: event.hello.instance, peerOutSeq: event.hello.outSeq, baseline: context.baseline ?? event.hello.outSeq };
}

/** The state `link.status` reports: quarantine first, then down, stalled, up. */
export function reportedState(snapshot: { matches(v: object): boolean }): LinkState {
  if (snapshot.matches({ health: 'quarantined' })) return LinkState.Quarantined;
  if (snapshot.matches({ conn: 'disconnected' })) return LinkState.Down;
  if (snapshot.matches({ health: 'stalled' })) return LinkState.Stalled;
  return LinkState.Up;
}
