import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, lstat, mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { call } from '../../actors/bus/index.ts';
import {
  BundleKind, codecs, decodeManifest, DEFAULT_OUTPUT_PATTERN, FarmError, frameFileName, newsVia, parseFrameRuns, PROTOCOL_MAJOR, quote, RemoteJobState, runOf, subjects,
  type BillSummary, type BundleBill, type BundleFile, type BundleManifest, type JobDetail, type JobSpec, type RemoteUpdate,
} from '../../protocol/index.ts';
import { openSealed } from '../bundles/index.ts';
import { syncDir } from '../cas/index.ts';
import { verifySiteSignature } from '../links/site-key.ts';
import type { ArrivedBundle } from '../intake/index.ts';
import { loadResultKey, type ResultKey } from '../links/result-key.ts';
import { resultEncryption } from './packer.ts';

export interface OwnJobOptions {
  site: string;
  dataDir: string;
  /** The intake's connection: `sched.query`, `sched.remote.<peer>`. */
  nc: NatsConnection;
  log: Logger;
  /** The site's policy: every outsourced job's results must come back encrypted (PackerOptions.encryptResults). */
  encryptResults?: JobSpec['encryptResults'];
  now?: () => number;
  /**
   * The output folder the peer was given for a job, when it is not the job's own here: a peer's job
   * this site passed on (chaining) keeps its owner's folder (sites/remote-jobs/forward.ts).
   */
  outputDirFor?(job: JobDetail): string | undefined;
  /** Another site's key as this site holds it, to verify the bills a chained job's peer forwards. */
  keyOf?(site: string): string | undefined;
}

/** One file of a bundle, placed: where it goes, its verified blob, and what the manifest says of it. */
interface Placed {
  path: string;
  blob: string;
  sha256: string;
  /** Set when the blob is encrypted (BundleFile.plain): the plaintext's hash and size. */
  plain?: BundleFile['plain'];
  /** How an error names it: `bundle X: outputs[0] "/path"`. */
  what: string;
}

/** Where the frames and logs of a bundle go, checked before anything is written. */
interface Placement {
  frames: (Placed & { frame: number })[];
  logs: Placed[];
  /** Thumbnails of sample frames a status bundle carries: `<output>/.rb-samples/<frame file>.png`. */
  samples: (Placed & { frame: number })[];
}

/** Where the vendor's sample thumbnails go, in the job's output folder (sites/remote-jobs/path-map.ts names them the same). */
const SAMPLES_DIR = '.rb-samples';

/**
 * The ownJob half of the intake (sites/intake/router.ts): news of a job this site sent to the
 * peer. A status becomes a RemoteUpdate; a (partial) result's frames are written into the job's
 * output folder **as the scheduler knows it** (asked, never taken from the bundle), each `.part`
 * then renamed, its logs under `<output>/.rb-logs/remote-<peer>/`, a status's sample thumbnails
 * in `<output>/.rb-samples/`; a bill is kept under
 * `<data>/fed/bills/<peer>/`. Every file is placed and checked before the first is written, so a
 * refused bundle writes nothing. A file already there with the same content is not written again,
 * and the scheduler applies each bundle once, so a replayed bundle is a no-op.
 */
export function ownJobHandler(o: OwnJobOptions): (b: ArrivedBundle) => Promise<void> {
  const log = o.log.child({ actor: 'outsource-intake' });
  const now = o.now ?? Date.now;
  let rkey: Promise<ResultKey> | undefined;
  const resultKey = () => (rkey ??= loadResultKey(o.dataDir));

  return async (b: ArrivedBundle) => {
    const m = b.manifest;
    const jobId = m.jobRef!.job; // the router let through only bundles that name one of our jobs
    const job = await askJob(jobId);
    if (job.outsourced?.site !== b.peer) {
      throw new FarmError('RB_FORBIDDEN', `bundle ${m.bundleId}: job ${jobId} was ${job.outsourced ? `sent to ${job.outsourced.site}` : 'not sent to any site'}, not to ${b.peer}`);
    }
    const u: RemoteUpdate = { v: PROTOCOL_MAJOR, jobId, bundleId: m.bundleId, at: now() };
    const via = newsVia(o.site, b.peer, m); // a chained job: where the peer passed it on
    if (via.length > 0) u.via = via;
    if (m.status) {
      if (m.status.state === RemoteJobState.Cancel) throw new FarmError('RB_BAD_BUNDLE', `bundle ${m.bundleId}: a cancel is ours to send, not ${b.peer}'s`);
      u.state = m.status.state;
      if (m.status.reason !== undefined) u.reason = m.status.reason;
      if (m.status.remoteJob !== undefined) u.remoteJob = m.status.remoteJob;
      if (m.status.frames) u.counts = m.status.frames;
    }
    const place = placement(m, job, b);
    await unseal(place, job);
    if (job.state !== 'cancelled') {
      // the client cancelled it: frames that still come are not wanted in its folder
      for (const f of [...place.frames, ...place.logs, ...place.samples]) await land(f.blob, f.path, f.sha256);
      if (place.frames.length > 0) u.outputs = place.frames.map((f) => ({ frame: f.frame, path: f.path }));
      if (place.samples.length > 0) u.samples = place.samples.map((f) => ({ frame: f.frame, path: f.path }));
    }
    if (m.kind === BundleKind.Result) u.final = true;
    if (m.bill) u.bill = await keepBill(b, job);
    const reply = await call(o.nc, subjects.schedRemote(o.site, b.peer), codecs.remoteUpdate, u, codecs.remoteUpdateReply, { timeoutMs: 10_000, unavailable: 'RB_SCHEDULER_UNAVAILABLE' });
    log.info({ jobId, peer: b.peer, bundleId: m.bundleId, kind: m.kind, frames: u.outputs?.length ?? 0, applied: reply.applied, state: reply.state, back: reply.back }, reply.applied ? 'news of an outsourced job taken in' : 'bundle applied before; nothing changed');
  };

  async function askJob(jobId: string): Promise<JobDetail> {
    const body = await call(o.nc, subjects.schedQuery(o.site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId, limit: 1 }, codecs.queryReply, { timeoutMs: 5_000, unavailable: 'RB_SCHEDULER_UNAVAILABLE' });
    if (!('job' in body)) throw new FarmError('RB_UNKNOWN_JOB', `the scheduler did not describe job ${jobId}`);
    return body.job;
  }

  /**
   * Where each output and log goes. An output must be the file of one of the job's frames in its
   * output folder (the scheduler's `outputDir` and pattern), anything else refuses the bundle.
   */
  function placement(m: BundleManifest, job: JobDetail, b: ArrivedBundle): Placement {
    const dir = resolve(job.outputDir);
    // the folder the peer names: the job's own, or its owner's for a job passed on (chaining)
    const theirs = resolve(o.outputDirFor?.(job) ?? dir);
    const here = (p: string): string | undefined => {
      const r = resolve(p);
      return r.startsWith(`${theirs}/`) ? join(dir, r.slice(theirs.length + 1)) : undefined;
    };
    const pattern = job.spec.output?.pattern ?? DEFAULT_OUTPUT_PATTERN;
    const frames = parseFrameRuns(job.spec.frames);
    const byPath = new Map(m.files.map((f) => [f.path, f]));
    const fileOf = (p: string, what: string) => {
      const f = byPath.get(p);
      if (!f) throw new FarmError('RB_BAD_BUNDLE', `bundle ${m.bundleId}: ${what} ${quote(p)} is not one of its files`);
      const blob = b.blobs.get(f.sha256); // a file that came in chunks too: the reader joined it
      if (!blob) throw new FarmError('RB_BAD_BUNDLE', `bundle ${m.bundleId}: ${what} ${quote(p)}: its content is missing`);
      return { blob, sha256: f.sha256, what: `bundle ${m.bundleId}: ${what} ${quote(p)}`, ...(f.plain ? { plain: f.plain } : {}) };
    };
    const head = /#+/.exec(pattern)!;
    const nameRe = new RegExp(`^${escapeRe(pattern.slice(0, head.index))}(\\d+)${escapeRe(pattern.slice(head.index + head[0].length))}$`);
    const out: Placement = { frames: [], logs: [], samples: [] };
    const frameOf = (name: string): number => {
      const match = name.match(nameRe);
      const frame = match ? Number(match[1]) : NaN;
      return match && frameFileName(pattern, frame) === name && runOf(frames, frame) >= 0 ? frame : NaN;
    };
    if (m.kind === BundleKind.Status) {
      // a status carries at most sample thumbnails, each straight in the job's .rb-samples/ and
      // named after a frame of the job (`<frame file>.png`), so that it can be shown as that frame's early look
      for (const [i, f] of m.files.entries()) {
        const path = here(f.path) ?? resolve(f.path);
        if (resolve(path, '..') !== join(dir, SAMPLES_DIR)) throw new FarmError('RB_FORBIDDEN', `bundle ${m.bundleId}: files[${i}] ${quote(f.path)} is not a sample in ${join(dir, SAMPLES_DIR)}: nothing of it was written`);
        const frame = basename(path).endsWith('.png') ? frameOf(basename(path).slice(0, -'.png'.length)) : NaN;
        if (Number.isNaN(frame)) throw new FarmError('RB_FORBIDDEN', `bundle ${m.bundleId}: files[${i}] ${quote(f.path)} is not the sample of any frame of job ${job.jobId} (${frameFileName(pattern, frames.starts[0] ?? 0)}.png …): nothing of it was written`);
        out.samples.push({ frame, path, ...fileOf(f.path, `files[${i}]`) });
      }
      return out;
    }
    if (m.kind !== BundleKind.Result && m.kind !== BundleKind.PartialResult) return out;
    for (const [i, p] of (m.outputs ?? []).entries()) {
      const path = here(p);
      if (path === undefined) {
        throw new FarmError('RB_FORBIDDEN', `bundle ${m.bundleId}: outputs[${i}] ${quote(p)} lies outside job ${job.jobId}'s output folder ${theirs}: nothing of it was written`);
      }
      const frame = frameOf(path.slice(dir.length + 1));
      if (Number.isNaN(frame)) {
        throw new FarmError('RB_FORBIDDEN', `bundle ${m.bundleId}: outputs[${i}] ${quote(p)} is not the file of any frame of job ${job.jobId} (${frameFileName(pattern, frames.starts[0] ?? 0)} …): nothing of it was written`);
      }
      out.frames.push({ frame, path, ...fileOf(p, `outputs[${i}]`) });
    }
    const logDir = join(dir, '.rb-logs', `remote-${b.peer}`);
    for (const [i, p] of (m.logs ?? []).entries()) out.logs.push({ path: join(logDir, basename(p)), ...fileOf(p, `logs[${i}]`) });
    return out;
  }

  /**
   * Encrypted files (docs/federation.md, "Encrypted results"): each is decrypted with the site's
   * result key beside its blob (in the reader's own folder, removed after the bundle) and checked
   * against the plaintext hash its manifest names; from then on its clear copy is what lands. A
   * clear file for a job whose results had to come encrypted is refused. Done for every file
   * before the first is written, so a bundle refused here writes nothing.
   */
  async function unseal(place: Placement, job: JobDetail): Promise<void> {
    const required = resultEncryption(job.spec.encryptResults, o.encryptResults) !== null;
    for (const [i, f] of [...place.frames, ...place.logs, ...place.samples].entries()) {
      if (!f.plain) {
        if (required) throw new FarmError('RB_FORBIDDEN', `${f.what} came in clear, but job ${job.jobId}'s results must come encrypted to ${o.site}'s result key: nothing of it was written`);
        continue;
      }
      const clear = `${f.blob}.${i}.clear`;
      try {
        await openSealed(f.blob, clear, (await resultKey()).identity, f.plain, f.what);
      } catch (err) {
        const e = FarmError.from(err);
        throw e.code === 'RB_DECRYPT_FAILED' ? new FarmError(e.code, `${e.message}: nothing of it was written`, { cause: e }) : e;
      }
      f.blob = clear;
      f.sha256 = f.plain.sha256;
    }
  }

  /** Writes a verified blob at `dest`: `.part`, fsync, rename, the folder fsynced; skipped when `dest` already holds it. */
  async function land(blob: string, dest: string, sha256: string): Promise<void> {
    const dir = resolve(dest, '..');
    await mkdir(dir, { recursive: true });
    const st = await lstat(dest).catch(() => null);
    if (st && !st.isFile()) throw new FarmError('RB_UNSAFE_PATH', `${dest} exists and is not a plain file (a symbolic link, a directory): nothing written over it`);
    if (st && st.size > 0 && (await sha256Of(dest)) === sha256) return;
    const part = `${dest}.${randomBytes(4).toString('hex')}.part`;
    try {
      await copyFile(blob, part);
      const fh = await open(part, 'r');
      await fh.sync().finally(() => fh.close());
      await rename(part, dest);
    } finally {
      await rm(part, { force: true });
    }
    await syncDir(dir);
  }

  /**
   * Keeps a bill as it came (with whether its signature was verified), and what `renderbus bills`
   * sums it by: the job's project, name and user as the scheduler knows them (the vendor never saw
   * them). Returns what the scheduler keeps of it.
   */
  async function keepBill(b: ArrivedBundle, job: JobDetail): Promise<BillSummary> {
    const m = b.manifest;
    const jobId = job.jobId;
    const bill = m.bill!;
    const dir = join(o.dataDir, 'fed', 'bills', b.peer);
    await mkdir(dir, { recursive: true, mode: 0o750 });
    const file = join(dir, `${jobId}.${m.bundleId}.json`);
    const part = `${file}.part`;
    const via = (bill.via ?? []).map((v) => subBill(v));
    // the manifest's bytes and signature as they came: a site this job came from gets them forwarded (chaining)
    const raw = b.manifestBytes ? { manifest: Buffer.from(b.manifestBytes).toString('base64'), ...(b.signature ? { signature: Buffer.from(b.signature).toString('base64') } : {}) } : undefined;
    const kept = { bundleId: m.bundleId, from: m.from, jobRef: m.jobRef, createdAt: m.createdAt, signed: b.signed, receivedAt: now(), project: job.project, jobName: job.name, user: job.user, bill: { ...bill, via: undefined }, ...(via.length > 0 ? { via } : {}), ...(raw ? { raw } : {}) };
    await writeFile(part, `${JSON.stringify(kept, null, 2)}\n`, { mode: 0o640 });
    await rename(part, file);
    await syncDir(dir);
    const t = bill.totals;
    return {
      currency: bill.currency, amountMinor: t.amountMinor, frames: t.frames, wallMs: t.wallMs, cpuMs: t.cpuMs, signed: b.signed, file,
      ...(bill.marginMinor !== undefined ? { marginMinor: bill.marginMinor } : {}),
      ...(via.length > 0 ? { via: via.map((v) => ({ site: v.site, currency: v.bill.currency, amountMinor: v.bill.totals.amountMinor, frames: v.bill.totals.frames, ...(v.verified !== undefined ? { verified: v.verified } : {}) })) } : {}),
    };
  }

  /**
   * A bill a chained job's peer forwarded from the site it passed the job to, as it came: decoded
   * (a bill bundle's manifest from that site), and verified with that site's key when this site
   * holds it (`verified` absent when it does not).
   */
  function subBill(v: NonNullable<BundleBill['via']>[number]) {
    const m = decodeManifest(v.manifest);
    if (m.kind !== BundleKind.Bill || !m.bill || m.from !== v.site) throw new FarmError('RB_BAD_BUNDLE', `a forwarded bill said to be ${v.site}'s is ${m.kind === BundleKind.Bill ? `from ${m.from}` : `a ${m.kind} bundle`}`);
    const key = o.keyOf?.(v.site);
    const verified = key === undefined || !v.signature ? (v.signature ? undefined : false) : verifySiteSignature(key, v.manifest, v.signature);
    return { site: v.site, bundleId: m.bundleId, jobRef: m.jobRef, ...(verified !== undefined ? { verified } : {}), bill: { ...m.bill, via: undefined } };
  }
}

async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
