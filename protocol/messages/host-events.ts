import { Type, type Static } from '@sinclair/typebox';
import { Millis, Token, V } from './common.ts';
import { SlotInfo } from './inventory.ts';

/**
 * Render server or registry → anyone, on `evt.host.<host>.<event>`: `slot` (a slot changed;
 * render server), `up`, `down` (registry: host registered, or dropped after missed heartbeats),
 * `draining` and `undrained` (render server: it stopped, or went back to, taking new work).
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

/**
 * Anyone → render server, request on `host.<host>.ctl`. `undrain` takes a drained server back to
 * work; a server that is stopping refuses it (RB_DRAINING).
 */
export const HostCtl = Type.Object({
  v: V,
  action: Type.Union([Type.Literal('drain'), Type.Literal('undrain'), Type.Literal('stop'), Type.Literal('kill-task'), Type.Literal('return-task')], {
    description: 'drain: take no new work, finish the running tasks; undrain: take work again (a server that is stopping refuses, RB_DRAINING); stop: drain, then leave; kill-task: kill taskId; return-task: hand taskId back unstarted if a slot holds it in hand (a running one goes on)',
  }),
  taskId: Type.Optional(Type.String()),
  /** With kill-task or return-task: only this attempt of the task (a later lease of the same task to this host is left alone). */
  attempt: Type.Optional(Type.Integer({ minimum: 1 })),
});
export type HostCtl = Static<typeof HostCtl>;
