import { Type, type Static } from '@sinclair/typebox';
import { Millis, Token, V } from './common.ts';

/** Where a leased task is on its render server. */
export const LeaseState = Type.Union([
  Type.Literal('running', { description: 'a slot is rendering it (or storing its frames)' }),
  Type.Literal('held', { description: 'held in hand, to start when the slot frees' }),
  Type.Literal('reporting', { description: 'ended; its result waits for the scheduler to take it' }),
]);
export type LeaseState = Static<typeof LeaseState>;

export const HeldLease = Type.Object({
  taskId: Type.String({ minLength: 1 }),
  jobId: Token,
  taskIndex: Type.Integer({ minimum: 0 }),
  attempt: Type.Integer({ minimum: 1 }),
  slot: Type.Integer({ minimum: 0 }),
  state: LeaseState,
  /** Running or reporting: when the slot started it, on the host's clock (as the report's `at`). */
  startedAt: Type.Optional(Millis),
});
export type HeldLease = Static<typeof HeldLease>;

/**
 * Render server → scheduler, on `sched.leases`, every heartbeat period and at once when a
 * scheduler says hello: every task this server holds a lease for. It renews those leases, lets
 * a restarted scheduler re-adopt them, and tells the scheduler which leases the server lost.
 */
export const LeaseReport = Type.Object({
  v: V,
  host: Token,
  serverId: Type.String({ minLength: 1 }),
  at: Millis,
  /** The next report comes within this period; a lease not renewed for 3 periods expires. */
  everyMs: Type.Integer({ minimum: 1 }),
  tasks: Type.Array(HeldLease),
});
export type LeaseReport = Static<typeof LeaseReport>;

/** Scheduler → render servers, on `sched.hello`, when it (re)starts serving or its connection returns: "report your leases now". */
export const SchedulerHello = Type.Object({
  v: V,
  schedulerId: Type.String({ minLength: 1, description: 'changes on every scheduler start' }),
  at: Millis,
});
export type SchedulerHello = Static<typeof SchedulerHello>;
