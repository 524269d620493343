import { Type, type Static } from '@sinclair/typebox';
import { Millis, Reply, Token, V } from './common.ts';

// The scheduler's site-wide controls that are not about one job: limits (licences) and sick hosts.

/** How a limit counts: each running task, or each host running any of the limit's tasks (a per-machine licence). */
export const LimitCount = Type.Union([Type.Literal('task'), Type.Literal('host')]);
export type LimitCount = Static<typeof LimitCount>;

/** One named limit of the site, e.g. `maya: 5` licences. */
export const Limit = Type.Object({
  name: Token,
  max: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
  per: LimitCount,
});
export type Limit = Static<typeof Limit>;

/**
 * Anyone → scheduler, request on `sched.limits`: `list`, `set` (a limit and its maximum; jobs
 * name the limits they need in `limits`), `remove`. Answered once a change is journaled.
 */
export const LimitsRequest = Type.Union([
  Type.Object({ v: V, action: Type.Literal('list') }),
  Type.Object({ v: V, action: Type.Literal('set'), limit: Limit }),
  Type.Object({ v: V, action: Type.Literal('remove'), name: Token }),
]);
export type LimitsRequest = Static<typeof LimitsRequest>;

export const LimitUse = Type.Object({ name: Token, max: Type.Integer({ minimum: 0 }), per: LimitCount, inUse: Type.Integer({ minimum: 0 }) });
export type LimitUse = Static<typeof LimitUse>;
export const LimitsReply = Reply(Type.Object({ limits: Type.Array(LimitUse) }));
export type LimitsReply = Static<typeof LimitsReply>;

/** The journal record of a limit change (`max` absent: removed). */
export const LimitRecord = Type.Object({ v: V, kind: Type.Literal('limit'), name: Token, max: Type.Optional(Type.Integer({ minimum: 0 })), per: Type.Optional(LimitCount), at: Millis });

/** A host that failed frames of several different jobs and gets no work for a while. */
export const SickHost = Type.Object({ host: Token, until: Millis, jobs: Type.Array(Token) });
export type SickHost = Static<typeof SickHost>;

/** A host's last `up` or `down` event kept in the site's event stream (the registry publishes them). */
export const HostTurn = Type.Object({
  host: Token,
  event: Type.Union([Type.Literal('up'), Type.Literal('down')]),
  at: Millis,
  reason: Type.Optional(Type.String()),
  serverId: Type.Optional(Type.String()),
});
export type HostTurn = Static<typeof HostTurn>;

/** Anyone → scheduler, request on `sched.hosts`: `sick` lists the sick hosts, `clear` gives one work again (an operator fixed it). */
export const HostsRequest = Type.Union([
  // `turns`: also each host's last up and down event, read by the scheduler from the event stream
  // (nobody else reads JetStream), so `renderbus hosts` lists the hosts that left
  Type.Object({ v: V, action: Type.Literal('sick'), turns: Type.Optional(Type.Boolean()) }),
  Type.Object({ v: V, action: Type.Literal('clear'), host: Token }),
]);
export type HostsRequest = Static<typeof HostsRequest>;
export const HostsReply = Reply(Type.Object({ sick: Type.Array(SickHost), turns: Type.Optional(Type.Array(HostTurn)) }));
export type HostsReply = Static<typeof HostsReply>;
