import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Packr } from 'msgpackr';
import { FarmError } from '../errors.ts';
import { JobSpec } from '../messages/job-spec.ts';
import { guardMsgpack } from './msgpack-guard.ts';

/** Format version of a bundle's manifest; a reader refuses other versions. */
export const BUNDLE_VERSION = 1;

/** What a bundle carries (docs/federation.md, "Bundles"). */
export const BundleKind = {
  Job: 'job',
  Result: 'result',
  PartialResult: 'partial-result',
  Status: 'status',
  Bill: 'bill',
} as const;
export type BundleKind = (typeof BundleKind)[keyof typeof BundleKind];

/** The tar entry names a bundle may hold, and nothing else. */
export const BUNDLE_ENTRY = { manifest: 'manifest.msgpack', signature: 'manifest.sig', blobPrefix: 'blobs/' } as const;
export const SHA256_HEX = '^[0-9a-f]{64}$';
export const BLOB_ENTRY = /^blobs\/([0-9a-f]{64})$/;

const Sha256 = Type.String({ pattern: SHA256_HEX });
const Size = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
// Paths are checked in full by bundlePathProblems (paths.ts); the schema only bounds them.
const BundlePath = Type.String({ minLength: 1, maxLength: 4096 });
const SiteName = Type.String({ pattern: '^[a-z0-9][a-z0-9_-]*$', maxLength: 64 });

/** An age X25519 recipient (`age1…`, bech32): the public key returned files are encrypted to. */
export const AGE_RECIPIENT = '^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$';

/** A piece of a large file: a file above 4 MiB travels as content-defined chunks (sites/bundles/content-chunker.ts). */
export const BundleChunk = Type.Object({ sha256: Sha256, size: Size }, { additionalProperties: false });
export type BundleChunk = Static<typeof BundleChunk>;

/**
 * One file as it was on the sending site: its original absolute path, size, permission bits
 * (rw/x only: no setuid, setgid or sticky) and sha256. Without `chunks` the file is one blob
 * named by its sha256; with them, the blobs are the chunks, in order, and `sha256` is still the
 * whole file's (the reader checks the joined chunks against it).
 */
export const BundleFile = Type.Object(
  {
    path: BundlePath,
    size: Size,
    mode: Type.Integer({ minimum: 0, maximum: 0o777 }),
    sha256: Sha256,
    chunks: Type.Optional(Type.Array(BundleChunk, { maxItems: 1_000_000 })),
    /**
     * An encrypted file (docs/federation.md, "Encrypted results"): the blob is an age file, so
     * `size`, `sha256` and `chunks` are the ciphertext's; these are the plaintext's, which the
     * receiver checks once it decrypted it.
     */
    plain: Type.Optional(Type.Object({ sha256: Sha256, size: Size }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type BundleFile = Static<typeof BundleFile>;

const Count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Minor = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: "an amount in the currency's minor unit (cents): no floats travel" });

/**
 * The job a bundle is about, named at the site that owns it (the studio that outsourced it):
 * `site` is that site and `job` its job id there. Every job, result, status and bill bundle
 * carries it; a site routes an arriving bundle by it (sites/intake/router.ts): a bundle about
 * one of our own jobs is news of work we sent out, one about a peer's job is work for us.
 */
export const BundleJobRef = Type.Object({ site: SiteName, job: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]*$', maxLength: 64 }) }, { additionalProperties: false });
export type BundleJobRef = Static<typeof BundleJobRef>;

/** Where an outsourced job stands at the site rendering it; `cancel` is the owner asking it to stop. */
export const RemoteJobState = {
  Accepted: 'accepted',
  Rejected: 'rejected',
  Started: 'started',
  Progress: 'progress',
  Done: 'done',
  Failed: 'failed',
  Cancel: 'cancel',
  Cancelled: 'cancelled',
} as const;
export type RemoteJobState = (typeof RemoteJobState)[keyof typeof RemoteJobState];

/** A status bundle's news (kind `status`): one step of the job's life at the other site. */
export const BundleStatus = Type.Object(
  {
    state: Type.Union(Object.values(RemoteJobState).map((k) => Type.Literal(k))),
    /** Why, for rejected, failed and cancel: a line a person reads. */
    reason: Type.Optional(Type.String({ maxLength: 2000 })),
    /** The job's id at the site rendering it (for its operators and logs). */
    remoteJob: Type.Optional(Type.String({ maxLength: 64 })),
    frames: Type.Optional(Type.Object({ total: Count, done: Count, failed: Count, running: Count }, { additionalProperties: false })),
    at: Type.Integer({ minimum: 0, description: 'ms since the epoch, at the sender' }),
  },
  { additionalProperties: false },
);
export type BundleStatus = Static<typeof BundleStatus>;

/** What one rendered frame cost, as the rendering site measured it. */
export const BillLine = Type.Object(
  {
    frame: Type.Integer(),
    host: Type.String({ maxLength: 200 }),
    wallMs: Count,
    cpuMs: Count,
    peakRssMb: Type.Optional(Count),
    /** Bytes of output the frame wrote. */
    bytes: Count,
  },
  { additionalProperties: false },
);
export type BillLine = Static<typeof BillLine>;

/**
 * A vendor's bill for one job (kind `bill`, or with a `result`): per frame, the rate card it was
 * priced by, and the totals. The bundle's manifest is signed by the vendor's site key
 * (`manifest.sig`), so the studio can show it was issued by that vendor.
 */
export const BundleBill = Type.Object(
  {
    currency: Type.String({ pattern: '^[A-Z]{3}$' }),
    rate: Type.Object({ perCoreHourMinor: Minor, perGbMinor: Minor, minimumMinor: Minor }, { additionalProperties: false }),
    frames: Type.Array(BillLine, { maxItems: 1_000_000 }),
    totals: Type.Object({ frames: Count, wallMs: Count, cpuMs: Count, bytes: Count, amountMinor: Minor }, { additionalProperties: false }),
    /** A chained job: what this site adds to the bills of the sites it passed the job to (its rate card's `forwardMinor`), in `amountMinor`. */
    marginMinor: Type.Optional(Minor),
    /**
     * A chained job: the bills of the sites this one passed it to, each as it came (the bill
     * bundle's exact manifest bytes and its signature), so the owner can verify the signer itself.
     */
    via: Type.Optional(Type.Array(Type.Object({
      site: SiteName,
      manifest: Type.Uint8Array({ maxByteLength: 256 * 1024 }),
      signature: Type.Optional(Type.Uint8Array({ maxByteLength: 4096 })),
    }, { additionalProperties: false }), { maxItems: 4 })),
  },
  { additionalProperties: false },
);
export type BundleBill = Static<typeof BundleBill>;

export const BundleManifest = Type.Object(
  {
    version: Type.Literal(BUNDLE_VERSION),
    kind: Type.Union(Object.values(BundleKind).map((k) => Type.Literal(k))),
    bundleId: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' }),
    from: SiteName,
    to: SiteName,
    route: Type.Array(SiteName, { maxItems: 16, description: 'sites the bundle passed through, for chaining' }),
    createdAt: Type.Integer({ minimum: 0, description: 'ms since the epoch' }),
    job: Type.Optional(JobSpec),
    jobRef: Type.Optional(BundleJobRef),
    status: Type.Optional(BundleStatus),
    files: Type.Array(BundleFile, { maxItems: 1_000_000 }),
    outputs: Type.Optional(Type.Array(BundlePath, { maxItems: 1_000_000, description: 'result bundles: the files in files[] that are frames, inside the job\'s output.dir' })),
    logs: Type.Optional(Type.Array(BundlePath, { maxItems: 1_000_000, description: 'result bundles: the files in files[] that are task logs' })),
    bill: Type.Optional(BundleBill),
    /**
     * Job bundles: every file the vendor returns (frames, logs, sample thumbnails) must be
     * encrypted to `to`, the studio's result key; with `purge`, the vendor removes its clear
     * copies once the result and bill are sent (docs/federation.md, "Encrypted results").
     */
    encryptResults: Type.Optional(Type.Object({ to: Type.String({ pattern: AGE_RECIPIENT }), purge: Type.Boolean() }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type BundleManifest = Static<typeof BundleManifest>;

const packr = new Packr({ useRecords: false, mapsAsObjects: true });
const compiled = TypeCompiler.Compile(BundleManifest);

export function encodeManifest(m: BundleManifest): Uint8Array {
  return packr.pack(m);
}

/**
 * Decodes and schema-checks a manifest. The bytes are walked first (guardMsgpack), so a hostile
 * manifest cannot make the decoder recurse deep or allocate for a length it does not hold.
 */
export function decodeManifest(bytes: Uint8Array): BundleManifest {
  guardMsgpack(bytes, BUNDLE_ENTRY.manifest);
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (cause) {
    throw new FarmError('RB_BAD_BUNDLE', `${BUNDLE_ENTRY.manifest} is not valid MessagePack`, { cause });
  }
  return checkManifest(value);
}

export function checkManifest(value: unknown): BundleManifest {
  if (!compiled.Check(value)) {
    const e = compiled.Errors(value).First();
    throw new FarmError('RB_BAD_BUNDLE', `${BUNDLE_ENTRY.manifest}: ${e?.path || '/'}: ${e?.message ?? 'invalid'}`);
  }
  return value;
}

/** The blobs a manifest names, each with its size: a file's chunks, or the file itself. */
export function manifestBlobs(m: BundleManifest): Map<string, number> {
  const blobs = new Map<string, number>();
  const add = (sha256: string, size: number, where: string) => {
    const had = blobs.get(sha256);
    if (had !== undefined && had !== size) throw new FarmError('RB_BAD_BUNDLE', `${where}: blob ${sha256} is given as ${had} and ${size} bytes`);
    blobs.set(sha256, size);
  };
  for (const f of m.files) {
    if (f.chunks) {
      const sum = f.chunks.reduce((a, c) => a + c.size, 0);
      if (sum !== f.size) throw new FarmError('RB_BAD_BUNDLE', `file ${quote(f.path)}: its chunks add up to ${sum} bytes, the file has ${f.size}`);
      for (const c of f.chunks) add(c.sha256, c.size, `file ${quote(f.path)}`);
    } else {
      add(f.sha256, f.size, `file ${quote(f.path)}`);
    }
  }
  return blobs;
}

/** A path as an error message shows it: JSON-quoted (NULs and control bytes visible), and cut when long. */
export function quote(path: string): string {
  return JSON.stringify(path.length > 120 ? `${path.slice(0, 120)}…` : path);
}
