import { Type, type Static } from '@sinclair/typebox';
import { Millis, Reply, Token, V } from './common.ts';
import { Requirements } from './job-spec.ts';

/*
 * Quotes and the choice of site (docs/federation.md, "Choosing where to render: quotes"): a job
 * that says `site: auto` is quoted by every linked peer, and the scheduler places it where it
 * finishes first within its budget.
 */

/** What a job description's `site` says to ask the linked peers for quotes and pick one (or stay here). */
export const AUTO_SITE = 'auto';

const Count = Type.Integer({ minimum: 0 });
const Ms = Type.Integer({ minimum: 0 });

/** An amount in a currency's minor unit (cents), as rate cards and bills count it. */
export const MoneySchema = Type.Object({ currency: Type.String({ pattern: '^[A-Z]{3}$' }), amountMinor: Count });

/** A file of the job as a content store holds it. */
export const QuoteFile = Type.Object({ sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }), size: Count });
export type QuoteFile = Static<typeof QuoteFile>;

/** What a site is asked to price: the job's shape, without its files. */
export const QuoteJob = Type.Object({
  /** Frames to render. */
  frames: Type.Integer({ minimum: 1 }),
  renderer: Type.String({ maxLength: 64 }),
  /** Lower is more urgent (JobSpec.priority). */
  priority: Type.Integer({ minimum: 0, maximum: 1000 }),
  requirements: Requirements,
  /** The asking site's own measured ms per frame for this renderer: used where the vendor has measured none. */
  frameMs: Type.Optional(Type.Integer({ minimum: 1 })),
});
export type QuoteJob = Static<typeof QuoteJob>;

/** Studio → vendor, request on `rb.fedsvc.<vendor>.<studio>.quote`: what would this job cost there, and when would it be done. */
export const QuoteRequest = Type.Object({
  v: V,
  /** The job's id at the studio (for the vendor's logs). */
  jobId: Token,
  job: QuoteJob,
  files: Type.Array(QuoteFile, { maxItems: 20_000 }),
  at: Millis,
});
export type QuoteRequest = Static<typeof QuoteRequest>;

/** Where a quote's ms per frame came from: the vendor's recent frames, the studio's, or neither (a default). */
export const FrameTimeSource = { Measured: 'measured', Studio: 'studio', Default: 'default' } as const;
export type FrameTimeSource = (typeof FrameTimeSource)[keyof typeof FrameTimeSource];

/** A vendor's answer: whether it can render the job, how loaded it is, what it lacks, and its estimate and price. */
export const Quote = Type.Object({
  site: Token,
  /** Some host there matches the job's requirements (its registry's `reg.match`). */
  canRender: Type.Boolean(),
  /** When not: the closest hosts and what each lacks. */
  closest: Type.Optional(Type.Array(Type.Object({ host: Token, missing: Type.Array(Type.String({ maxLength: 200 }), { maxItems: 20 }) }), { maxItems: 5 })),
  /** Matching slots idle now, and matching slots in all. */
  freeSlots: Count,
  slots: Count,
  /** Frames queued or running there at the job's priority or more urgent. */
  framesAhead: Count,
  /** Ms per frame the estimate uses, and where it came from. */
  frameMs: Type.Integer({ minimum: 1 }),
  frameFrom: Type.Union(Object.values(FrameTimeSource).map((s) => Type.Literal(s))),
  /** Bytes and files of the job its store for the studio still lacks. */
  missingBytes: Count,
  missingFiles: Count,
  rate: Type.Object({ currency: Type.String({ pattern: '^[A-Z]{3}$' }), perCoreHourMinor: Count, perGbMinor: Count, minimumMinor: Count }),
  /** The estimate, in ms from now: transfer + queue + frames ÷ slots × frame time. */
  transferMs: Ms,
  queueMs: Ms,
  renderMs: Ms,
  finishMs: Ms,
  price: MoneySchema,
});
export type Quote = Static<typeof Quote>;
export const QuoteReply = Reply(Quote);
export type QuoteReply = Static<typeof QuoteReply>;

/** Scheduler → its site's services, request on `rb.<site>.link.quotes`: ask every linked peer for a quote of this job. */
export const QuotesRequest = Type.Object({
  v: V,
  jobId: Token,
  job: QuoteJob,
  /** The job's files (scene and support files), absolute: hashed here, sent as {sha256, size}. */
  paths: Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), { maxItems: 20_000 }),
  /** How long to wait for each peer (default 5 s). */
  timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000 })),
});
export type QuotesRequest = Static<typeof QuotesRequest>;

/** One peer's answer: its quote, or why there is none (did not answer in time, refused). */
export const PeerQuote = Type.Object({
  peer: Token,
  quote: Type.Optional(Quote),
  /** No quote: `did not answer in 5 s`, or the peer's error. */
  error: Type.Optional(Type.String({ maxLength: 2000 })),
  /** How long the peer took (or the wait, when it did not answer). */
  ms: Ms,
});
export type PeerQuote = Static<typeof PeerQuote>;
export const QuotesReply = Reply(Type.Object({ answers: Type.Array(PeerQuote, { maxItems: 1000 }), files: Count, bytes: Count }));
export type QuotesReply = Static<typeof QuotesReply>;

/** A site's quote service → its scheduler, request on `rb.<site>.sched.load`: how loaded the queue is for a job of this renderer and priority. */
export const LoadRequest = Type.Object({ v: V, renderer: Type.String({ maxLength: 64 }), priority: Type.Integer({ minimum: 0, maximum: 1000 }) });
export type LoadRequest = Static<typeof LoadRequest>;
export const LoadReply = Reply(Type.Object({
  /** Frames queued or running at that priority or more urgent. */
  framesAhead: Count,
  /** Mean ms per frame of the renderer's frames done in the jobs in memory, weighted by frames; absent when none were measured. */
  frameMs: Type.Optional(Type.Integer({ minimum: 1 })),
  measuredFrames: Count,
}));
export type LoadReply = Static<typeof LoadReply>;
export type LoadBody = Extract<LoadReply, { ok: true }>['body'];

/** One site weighed for a job: its estimate and price, or why it was skipped. */
export const PlaceOption = Type.Object({
  site: Token,
  /** This site itself (rendering here), not a peer. */
  here: Type.Optional(Type.Boolean()),
  finishMs: Type.Optional(Ms),
  price: Type.Optional(MoneySchema),
  slots: Type.Optional(Count),
  framesAhead: Type.Optional(Count),
  missingBytes: Type.Optional(Count),
  /** Not a candidate: cannot render it, did not answer, over the budget, another currency. */
  skipped: Type.Optional(Type.String({ maxLength: 2000 })),
});
export type PlaceOption = Static<typeof PlaceOption>;

/** One part of a split job (docs/federation.md, "Split jobs"): an ordinary job rendering a subset of its frames, here or at a peer. */
export const SplitPartRef = Type.Object({
  jobId: Token,
  site: Token,
  /** Rendered here (no site); otherwise outsourced to `site`. */
  here: Type.Optional(Type.Boolean()),
  frames: Type.String({ minLength: 1, maxLength: 4000 }),
});
export type SplitPartRef = Static<typeof SplitPartRef>;
export const MAX_SPLIT_PARTS = 20;

/** Where an `auto` job was placed and why, as its summary shows it (`renderbus job`, `why`, the monitor). */
export const PlacementSummary = Type.Object({
  /** The peer it was sent to; absent: it renders here. */
  peer: Type.Optional(Token),
  /** The choice in words: `placed at v2: finishes in ~40 s for 0.12 EUR; v1: …; here: …`. */
  text: Type.String({ maxLength: 8000 }),
  options: Type.Array(PlaceOption, { maxItems: 1000 }),
  /** A split job (`split: true`): its parts, each an ordinary job; the job itself renders nothing. */
  parts: Type.Optional(Type.Array(SplitPartRef, { minItems: 2, maxItems: MAX_SPLIT_PARTS })),
  at: Millis,
});
export type PlacementSummary = Static<typeof PlacementSummary>;

/**
 * Journal record: where an `auto` job renders (site-choice.ts), written before it is applied so a
 * restarted scheduler keeps the choice. With `peer` the job is outsourced as if it had said
 * `site: <peer>`; without, it is queued here.
 */
export const PlaceRecord = Type.Object({
  v: V,
  kind: Type.Literal('place'),
  jobId: Token,
  // the placement as the job's summary shows it: a replay makes the same (split: the same parts, each once)
  ...PlacementSummary.properties,
});
export type PlaceRecord = Static<typeof PlaceRecord>;
