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

/**
 * Anyone → registry, request on `reg.list`: the resource database, one page per request (a farm of
 * thousands of hosts does not fit one message). `{ v }` alone asks for the first page.
 */
export const ListRequest = Type.Object({
  v: V,
  after: Type.Optional(
    Type.String({
      pattern: Token.pattern,
      maxLength: Token.maxLength,
      description: 'a host name: only hosts whose names sort after it (the last host of the previous page). Hosts come sorted by name, so the cursor is stable',
    }),
  ),
  limit: Type.Optional(Type.Integer({ minimum: 1, description: 'at most this many hosts in the page (fewer when they would not fit one message)' })),
});
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
export const ListReply = Reply(
  Type.Object({
    registryId: Type.String(),
    hosts: Type.Array(HostRecord),
    more: Type.Optional(
      Type.Boolean({
        description:
          'true: more hosts follow this page; ask again with `after` set to its last host (and the same registryId expected: another one means the registry restarted, so start over). Absent from a registry older than paging, which sent every host',
      }),
    ),
  }),
);
export type ListReply = Static<typeof ListReply>;
export type ListBody = Extract<ListReply, { ok: true }>['body'];
