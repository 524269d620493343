import { Type, type Static } from '@sinclair/typebox';
import { Millis, Token, V } from './common.ts';
import { SlotInfo } from './inventory.ts';

/**
 * Render server or registry → anyone, on `evt.host.<host>.<event>`: `slot` (a slot changed;
 * render server), `up`, `down` (registry: host registered, or dropped after missed heartbeats),
 * `draining`.
 */
export const HostEvent = Type.Object({
  v: V,
  host: Token,
  event: Type.String(),
  at: Millis,
  /** The render server instance; changes when it restarts. */
  serverId: Type.Optional(Type.String()),
  slot: Type.Optional(SlotInfo),
  reason: Type.Optional(Type.String()),
});
export type HostEvent = Static<typeof HostEvent>;

/** Anyone → render server, request on `host.<host>.ctl`. */
export const HostCtl = Type.Object({
  v: V,
  action: Type.Union([Type.Literal('drain'), Type.Literal('stop'), Type.Literal('kill-task')]),
  taskId: Type.Optional(Type.String()),
  /** With kill-task: only this attempt of the task (a later lease of the same task to this host is left alone). */
  attempt: Type.Optional(Type.Integer({ minimum: 1 })),
});
export type HostCtl = Static<typeof HostCtl>;
