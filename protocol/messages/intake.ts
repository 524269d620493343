import { Type, type Static } from '@sinclair/typebox';
import { Reply, Token, V } from './common.ts';
import { JobSpec } from './job-spec.ts';

/**
 * Where a job came from when a peer outsourced it to us: the peer site and the job's id there.
 * The scheduler keeps it on the job (journaled), shows it, and submits a job once per origin.
 */
export const JobOrigin = Type.Object({ site: Token, job: Token }, { additionalProperties: false });
export type JobOrigin = Static<typeof JobOrigin>;

/**
 * Intake → scheduler, request on `sched.intake.<peer>`: submit a peer's job, or cancel it. The
 * peer is the subject's last token (only the intake's credential may publish there), never a
 * field: `originJob` is the job's id at that peer. A submit of an origin already known answers
 * the job it made (`existing`), so a replayed bundle never renders twice.
 */
export const IntakeRequest = Type.Union([
  Type.Object({ v: V, kind: Type.Literal('submit'), originJob: Token, spec: JobSpec }),
  Type.Object({ v: V, kind: Type.Literal('cancel'), originJob: Token }),
]);
export type IntakeRequest = Static<typeof IntakeRequest>;

export const IntakeReply = Reply(
  Type.Object({
    jobId: Token,
    frames: Type.Integer({ minimum: 0 }),
    tasks: Type.Integer({ minimum: 0 }),
    /** The origin was submitted before: this is that job, nothing new was queued. */
    existing: Type.Boolean(),
    /** The job's state after the request (a cancel of a finished job leaves it as it ended). */
    state: Type.String(),
  }),
);
export type IntakeReply = Static<typeof IntakeReply>;

/** One key per origin, for the scheduler's index of them. */
export const originKey = (o: JobOrigin): string => `${o.site}/${o.job}`;

/** The user, group and project a peer's jobs run as: not a subject token, so no artist's credential can own (steer) them. */
export const peerPrincipal = (peer: string): string => `peer:${peer}`;
