import { Type, type Static } from '@sinclair/typebox';
import { Millis, Reply, Token, V } from './common.ts';

/** A project's (show's) weight in fair share: slots are split between busy projects in proportion to their weights. */
export const Share = Type.Object({
  project: Token,
  weight: Type.Integer({ minimum: 1, maximum: 10_000 }),
});
export type Share = Static<typeof Share>;

/**
 * Anyone → scheduler, request on `sched.shares`: `list`, `set` (a project's weight), `remove`.
 * Fair share is on once any share is set; projects not named then weigh 1. Answered once a
 * change is journaled.
 */
export const SharesRequest = Type.Union([
  Type.Object({ v: V, action: Type.Literal('list') }),
  Type.Object({ v: V, action: Type.Literal('set'), share: Share }),
  Type.Object({ v: V, action: Type.Literal('remove'), project: Token }),
]);
export type SharesRequest = Static<typeof SharesRequest>;

/** A project as fair share sees it: its weight, what that entitles it to now, what it uses. */
export const ShareUse = Type.Object({
  project: Type.String({ minLength: 1 }),
  weight: Type.Integer({ minimum: 1 }),
  /** Set by an operator (false: a project with work that weighs the default 1). */
  set: Type.Boolean(),
  /** Its fraction of the farm's busy slots, among the projects that have work (0 to 1). */
  share: Type.Number({ minimum: 0, maximum: 1 }),
  /** Slots it holds now (running tasks, and tasks held in hand). */
  running: Type.Integer({ minimum: 0 }),
  /** Tasks of it that wait for a slot. */
  queued: Type.Integer({ minimum: 0 }),
});
export type ShareUse = Static<typeof ShareUse>;
export const SharesReply = Reply(Type.Object({ enabled: Type.Boolean(), projects: Type.Array(ShareUse) }));
export type SharesReply = Static<typeof SharesReply>;

/** The journal record of a share change (`weight` absent: removed). */
export const ShareRecord = Type.Object({ v: V, kind: Type.Literal('share'), project: Token, weight: Type.Optional(Type.Integer({ minimum: 1 })), at: Millis });
