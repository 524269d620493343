import { Type, type Static } from '@sinclair/typebox';
import { Millis, Reply, Token, V } from './common.ts';
import { RemoteJobState } from '../bundles/manifest.ts';

const Count = Type.Integer({ minimum: 0 });

/** The id of an outsourced job's bundle: one per job, named by it, so a replayed event writes nothing twice. */
export const jobBundleId = (jobId: string): string => `job-${jobId}`;
/** The id of the status bundle that asks the vendor to stop a job. */
export const cancelBundleId = (jobId: string): string => `cancel-${jobId}`;

/**
 * Where an outsourced job stands at the site rendering it, as the studio last heard: `sent` (its
 * bundle is in outgoing/, nothing heard yet), then the vendor's status states (a `cancel` is the
 * studio's own request and never a remote state).
 */
const { Cancel: _cancel, ...vendorStates } = RemoteJobState;
export const RemoteState = { Sent: 'sent', ...vendorStates } as const;
export type RemoteState = (typeof RemoteState)[keyof typeof RemoteState];
const RemoteStateSchema = Type.Union(Object.values(RemoteState).map((s) => Type.Literal(s)));

/** The vendor's frame counts, as its status said. */
export const RemoteCounts = Type.Object({ total: Count, done: Count, failed: Count, running: Count });
export type RemoteCounts = Static<typeof RemoteCounts>;

/** What a vendor's bill came to, as the studio keeps it with the job (the bill itself is in `<data>/fed/bills/<peer>/`). */
export const BillSummary = Type.Object({
  currency: Type.String({ pattern: '^[A-Z]{3}$' }),
  amountMinor: Count,
  frames: Count,
  wallMs: Count,
  cpuMs: Count,
  /** manifest.sig was present and verified with the vendor's site key. */
  signed: Type.Boolean(),
  /** Where the bill was kept. */
  file: Type.Optional(Type.String()),
  /** A chained job: the peer's own share (its margin), and the bills of the sites it passed the job to, as it forwarded them. */
  marginMinor: Type.Optional(Count),
  via: Type.Optional(Type.Array(Type.Object({
    site: Token,
    currency: Type.String({ pattern: '^[A-Z]{3}$' }),
    amountMinor: Count,
    frames: Count,
    /** true: its signature verified with that site's key as this site holds it; false: it did not; absent: that key is not known here. */
    verified: Type.Optional(Type.Boolean()),
  }), { maxItems: 4 })),
});
export type BillSummary = Static<typeof BillSummary>;

/**
 * An early look: the thumbnail of a sample frame (the first, last and middle frames render first
 * at the vendor) written in the job's output folder under `.rb-samples/`, before the frame itself.
 */
export const SampleLook = Type.Object({ frame: Type.Integer({ minimum: 0 }), path: Type.String({ maxLength: 4096 }) });
export type SampleLook = Static<typeof SampleLook>;

/**
 * Intake → scheduler, request on `sched.remote.<peer>` (only the intake credential may publish
 * it; the subject's last token is the peer the news came from): news of a job this site
 * outsourced, from one bundle that peer sent. Applied once per `bundleId` (a replayed bundle is a
 * no-op). Frames in `outputs` are already written in the job's output folder.
 */
export const RemoteUpdate = Type.Object({
  v: V,
  jobId: Token,
  /** The bundle the news came in. */
  bundleId: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' }),
  /** A status bundle's state. */
  state: Type.Optional(RemoteStateSchema),
  reason: Type.Optional(Type.String({ maxLength: 2000 })),
  /** The job's id at the vendor. */
  remoteJob: Type.Optional(Type.String({ maxLength: 64 })),
  counts: Type.Optional(RemoteCounts),
  /** Frames written into the job's output folder from this bundle. */
  outputs: Type.Optional(Type.Array(Type.Object({ frame: Type.Integer({ minimum: 0 }), path: Type.String() }), { maxItems: 1_000_000 })),
  /** Sample thumbnails written into the job's `.rb-samples/` from this bundle. */
  samples: Type.Optional(Type.Array(SampleLook, { maxItems: 64 })),
  /** A `result` bundle: the vendor's last word on the frames; frames not back by then failed. */
  final: Type.Optional(Type.Boolean()),
  bill: Type.Optional(BillSummary),
  /** A chained job: the sites beyond the peer that it went through, in order (`[v2]`: the peer passed it to v2). */
  via: Type.Optional(Type.Array(Token, { maxItems: 4 })),
  at: Millis,
});
export type RemoteUpdate = Static<typeof RemoteUpdate>;

/** The scheduler's answer: whether the update changed anything (false: that bundle was applied before), and where the job stands. */
export const RemoteUpdateReply = Reply(Type.Object({ applied: Type.Boolean(), state: Type.String(), back: Count }));
export type RemoteUpdateReply = Static<typeof RemoteUpdateReply>;

/** An outsourced job, as its summary shows it (`renderbus job`, `jobs`, the monitor). */
export const OutsourceSummary = Type.Object({
  /** The peer it was sent to. */
  site: Token,
  /** The job bundle's id (`job-<jobId>`). */
  bundleId: Type.String(),
  state: RemoteStateSchema,
  /** Frames back in the output folder. */
  back: Count,
  remoteJob: Type.Optional(Type.String()),
  reason: Type.Optional(Type.String()),
  counts: Type.Optional(RemoteCounts),
  bill: Type.Optional(BillSummary),
  /** Early looks: the sample thumbnails back so far, by frame. */
  samples: Type.Optional(Type.Array(SampleLook)),
  /** When the last news came. */
  heardAt: Type.Optional(Millis),
  /**
   * Why it went there when its description named no site: the site's policy sent it because no
   * local host could render it (`--outsource-unrenderable`; absent for a job that said `site`).
   */
  why: Type.Optional(Type.String()),
  /** A chained job: the sites beyond `site` that it went through (`outsourced to v1 → v2`). */
  via: Type.Optional(Type.Array(Token)),
});
export type OutsourceSummary = Static<typeof OutsourceSummary>;

/** Journal record: one remote update, as accepted (replayed through the same rules). */
export const RemoteRecord = Type.Object({
  v: V,
  kind: Type.Literal('remote'),
  jobId: Token,
  peer: Token,
  update: RemoteUpdate,
  at: Millis,
});
export type RemoteRecord = Static<typeof RemoteRecord>;

/**
 * Journal record: a job that named no site, sent to `peer` by the site's policy because no local
 * host could render it (actors/scheduler/outsource-policy.ts). From then on it is outsourced
 * exactly as if it had said `site: <peer>`; a replay applies it again.
 */
export const OutsourceRecord = Type.Object({
  v: V,
  kind: Type.Literal('outsource'),
  jobId: Token,
  peer: Token,
  /** Why, for people: what the registry said of the local hosts. */
  why: Type.String({ maxLength: 2000 }),
  at: Millis,
});
export type OutsourceRecord = Static<typeof OutsourceRecord>;
