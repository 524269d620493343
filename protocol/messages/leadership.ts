import { Type, type Static } from '@sinclair/typebox';
import { Millis, Token, V } from './common.ts';

/** The services of a site that run as one leader and standbys (actors/leadership). */
export const LeaderRole = Type.Union([Type.Literal('scheduler'), Type.Literal('registry')]);
export type LeaderRole = Static<typeof LeaderRole>;

/**
 * The value of a leadership key (`scheduler`, `registry`) in the site's leaders bucket: who
 * leads, renewed by the leader every few hundred ms. Standbys never compare `renewedAt` with
 * their own clock (machines' clocks differ): a lease has lapsed when its revision stopped
 * changing for long enough on the standby's own clock. `host` and `pid` let a process that
 * restarts on the same machine take over at once from its dead predecessor.
 */
export const Leadership = Type.Object({
  v: V,
  role: LeaderRole,
  /** The holder's instance id: new on every process start. */
  holder: Type.String({ minLength: 1, maxLength: 64 }),
  host: Type.String({ minLength: 1, maxLength: 255 }),
  pid: Type.Integer({ minimum: 1 }),
  /** When this holder took the lease, on its clock. */
  since: Millis,
  renewedAt: Millis,
  /** The holder's name on the bus (its credential's), for operators. */
  name: Type.Optional(Token),
});
export type Leadership = Static<typeof Leadership>;
