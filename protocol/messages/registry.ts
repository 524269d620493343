import { Type, type Static } from '@sinclair/typebox';
import { Millis, Reply, Token, V } from './common.ts';
import { HostInventory, SlotInfo } from './inventory.ts';
import { Requirements } from './job-spec.ts';

/** Registry → everyone, on `reg.hello`, at start and periodically: "the registry is here". */
export const RegistryHello = Type.Object({
  v: V,
  registryId: Type.String({ minLength: 1, description: 'changes on every registry start' }),
  at: Millis,
  announceMs: Type.Integer({ minimum: 1, description: 'how often hello repeats' }),
});
export type RegistryHello = Static<typeof RegistryHello>;

/** Render server → registry, request on `reg.register`: "this host, its inventory, its slots". */
export const HostRegister = Type.Object({
  v: V,
  host: Token,
  serverId: Type.String({ minLength: 1, description: 'changes on every render server start' }),
  inventory: HostInventory,
  slots: Type.Array(SlotInfo),
  heartbeatMs: Type.Integer({ minimum: 1 }),
});
export type HostRegister = Static<typeof HostRegister>;
export const HostRegisterReply = Reply(Type.Object({ registryId: Type.String() }));
export type HostRegisterReply = Static<typeof HostRegisterReply>;

/** Render server → registry, request on `reg.heartbeat`: full slot states, self-correcting. */
export const HostHeartbeat = Type.Object({
  v: V,
  host: Token,
  serverId: Type.String({ minLength: 1 }),
  slots: Type.Array(SlotInfo),
  load: Type.Optional(Type.Number({ minimum: 0, description: '1-minute load average' })),
  draining: Type.Optional(Type.Boolean()),
});
export type HostHeartbeat = Static<typeof HostHeartbeat>;
/** `known: false` tells the render server to register again (the registry restarted). */
export const HostHeartbeatReply = Reply(Type.Object({ known: Type.Boolean(), registryId: Type.String() }));
export type HostHeartbeatReply = Static<typeof HostHeartbeatReply>;

/** Render server → registry, request on `reg.bye`: leaving on purpose. */
export const HostBye = Type.Object({ v: V, host: Token, serverId: Type.String({ minLength: 1 }) });
export type HostBye = Static<typeof HostBye>;
export const HostByeReply = Reply(Type.Object({}));

/** Scheduler → registry, request on `reg.match`: hosts that meet a profile. */
export const MatchRequest = Type.Object({
  v: V,
  requirements: Requirements,
  /** Only hosts with at least one idle slot (the source's "resource list"). */
  freeOnly: Type.Optional(Type.Boolean()),
});
export type MatchRequest = Static<typeof MatchRequest>;

export const MatchedHost = Type.Object({
  host: Token,
  serverId: Type.String(),
  inventory: HostInventory,
  slots: Type.Array(SlotInfo),
  free: Type.Integer({ minimum: 0 }),
});
export type MatchedHost = Static<typeof MatchedHost>;

/** When nothing matches, `closest` names the nearest hosts and what each lacks. */
export const MatchReply = Reply(
  Type.Object({
    hosts: Type.Array(MatchedHost),
    closest: Type.Array(Type.Object({ host: Token, missing: Type.Array(Type.String()) })),
    totalHosts: Type.Integer({ minimum: 0 }),
  }),
);
export type MatchReply = Static<typeof MatchReply>;
export type MatchBody = Extract<MatchReply, { ok: true }>['body'];

/** Anyone → registry, request on `reg.list`: the whole resource database. */
export const ListRequest = Type.Object({ v: V });
export type ListRequest = Static<typeof ListRequest>;
export const HostRecord = Type.Object({
  host: Token,
  serverId: Type.String(),
  inventory: HostInventory,
  slots: Type.Array(SlotInfo),
  registeredAt: Millis,
  lastSeenAt: Millis,
  load: Type.Optional(Type.Number()),
  draining: Type.Optional(Type.Boolean()),
});
export type HostRecord = Static<typeof HostRecord>;
export const ListReply = Reply(Type.Object({ registryId: Type.String(), hosts: Type.Array(HostRecord) }));
export type ListReply = Static<typeof ListReply>;
