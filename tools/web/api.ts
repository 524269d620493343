import { close, read, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { IncomingMessage } from 'node:http';
import type { NatsConnection } from '@nats-io/transport-node';
import { checkRealDir, openToRead } from '../../actors/files/index.ts';
import type { FarmModel, HttpAnswer, Route } from '../../actors/monitor/index.ts';
import {
  DEFAULT_OUTPUT_PATTERN, FarmError, PROTOCOL_MAJOR, Role, codecs, frameFileName, isToken, subjects,
  type CtlRequest, type ErrorCode, type JobDetail,
} from '../../protocol/index.ts';
import { ask, ctlSubject, type FarmClient } from '../cli/farm-client.ts';
import { frameLogPath, loadFrame } from '../cli/frame.ts';
import { loadHosts } from '../cli/hosts.ts';
import { loadJob } from '../cli/job.ts';
import { loadJobs } from '../cli/jobs.ts';
import { queueEntries } from '../cli/manager-format.ts';
import type { ThumbnailCache } from './thumbnails.ts';

const readFd = promisify(read);
const closeFd = promisify(close);

/**
 * The web monitor's JSON API. Each view answers what the same CLI command prints with `--json`
 * (`hosts`, `queue`, `job <id>`, `frame <job>:<n>`), through the same loaders, so the browser
 * and the terminal show one model. Actions go to `sched.ctl` like `renderbus pause` and friends.
 */

export interface ApiOptions {
  nc: NatsConnection;
  site: string;
  model: FarmModel;
  thumbnails: ThumbnailCache;
}

/** The most of a log a frame view carries (its end); the rest stays in the file. */
export const LOG_TAIL_BYTES = 64 * 1024;
const ACTIONS = new Set<CtlRequest['action']>(['pause', 'resume', 'cancel', 'retry', 'release', 'priority']);
const MAX_BODY_BYTES = 64 * 1024;
/** How long one job detail answers the thumbnail requests of a grid (a frame it does not show done is asked for afresh). */
const DETAIL_REUSE_MS = 2_000;

const STATUS_OF: Partial<Record<ErrorCode, number>> = {
  RB_UNKNOWN_JOB: 404,
  RB_UNKNOWN_HOST: 404,
  RB_NO_SUCH_SLOT: 404,
  RB_BAD_ARGUMENT: 400,
  RB_BAD_JOB: 400,
  RB_BAD_FRAMES: 400,
  RB_SCHEMA_MISMATCH: 400,
  RB_SCHEDULER_UNAVAILABLE: 503,
  RB_REGISTRY_UNAVAILABLE: 503,
  RB_OUTPUT_FAILED: 404, // a thumbnail of a frame file that is missing or unreadable here
};

export function jsonAnswer(value: unknown, status = 200): HttpAnswer {
  return { status, contentType: 'application/json; charset=utf-8', body: `${JSON.stringify(value)}\n` };
}

/** A farm error as JSON `{ error: { code, message } }` with the status that fits it. */
export function errorAnswer(err: unknown): HttpAnswer {
  if (!(err instanceof FarmError)) throw err; // a bug: the server logs it and answers 500
  return jsonAnswer({ error: { code: err.code, message: err.message } }, STATUS_OF[err.code] ?? 409);
}

function badRequest(message: string): HttpAnswer {
  return jsonAnswer({ error: { code: 'RB_BAD_ARGUMENT', message } }, 400);
}

/** Wraps a route so that farm errors become JSON answers. */
function guarded(route: Route): Route {
  return async (req, ctx) => {
    try {
      return await route(req, ctx);
    } catch (err) {
      return errorAnswer(err);
    }
  };
}

export function apiRoutes(o: ApiOptions): Map<string, Route> {
  // the CLI's loaders take a FarmClient: this one is the monitor's own connection, never closed here
  const fc: FarmClient = { nc: o.nc, url: 'the monitor\'s NATS connection', site: o.site, farm: null, creds: { role: Role.Monitor, name: 'monitor' }, close: async () => {} };
  const jobDetail = (jobId: string) => loadJob(fc, jobId);
  // a frame grid asks for every done frame's thumbnail at once: one job detail serves them all
  const recentDetails = new Map<string, { at: number; job: Promise<JobDetail> }>();
  const thumbnailDetail = (jobId: string, fresh = false): Promise<JobDetail> => {
    const t = Date.now();
    for (const [id, d] of recentDetails) if (t - d.at > DETAIL_REUSE_MS) recentDetails.delete(id);
    const had = recentDetails.get(jobId);
    if (had && !fresh) return had.job;
    const job = jobDetail(jobId);
    recentDetails.set(jobId, { at: t, job });
    job.catch(() => recentDetails.delete(jobId));
    return job;
  };

  const routes = new Map<string, Route>([
    ['/api/farm', () => jsonAnswer({ site: o.site, ...o.model.changesSince() })],
    ['/api/hosts', guarded(async () => jsonAnswer((await loadHosts(fc)).views))], // hosts whose sickness is unknown say `sick: null`
    ['/api/queue', guarded(async () => {
      const [jobs, shares] = await Promise.all([
        loadJobs(fc),
        ask(fc, 'scheduler', subjects.schedShares(o.site), codecs.sharesRequest, { v: PROTOCOL_MAJOR, action: 'list' }, codecs.sharesReply).catch(() => null),
      ]);
      return jsonAnswer({ shares, jobs: queueEntries(jobs) });
    })],
    ['/api/jobs/:job', guarded(async (_req, { params }) => {
      if (!isToken(params.job!)) return badRequest(`'${params.job}' is not a job id`);
      return jsonAnswer(await jobDetail(params.job!));
    })],
    ['/api/jobs/:job/frames/:frame', guarded(async (_req, { params }) => {
      const ref = frameRef(params);
      if ('contentType' in ref) return ref;
      const { job, record } = await loadFrame(fc, ref.jobId, ref.frame);
      const logPath = frameLogPath(job, record);
      const log = await readTail(logPath, LOG_TAIL_BYTES);
      const running = o.model.runs.runOf(ref.jobId, ref.frame);
      return jsonAnswer({ jobId: ref.jobId, frame: record, live: running?.run.live ?? null, logPath, log: log?.text ?? null, logBytes: log?.size ?? null });
    })],
    ['/api/jobs/:job/frames/:frame/thumbnail', guarded(async (req, { params, url }) => {
      const ref = frameRef(params);
      if ('contentType' in ref) return ref;
      const width = url.searchParams.has('w') ? Number(url.searchParams.get('w')) : 160;
      if (!Number.isInteger(width) || width < 16 || width > 1024) return badRequest(`w=${url.searchParams.get('w')}: a width in pixels from 16 to 1024`);
      let job = await thumbnailDetail(ref.jobId);
      let record = job.frames.find((f) => f.frame === ref.frame);
      if (record?.state !== 'done') {
        // the page heard the frame finish after the detail it reuses was taken
        job = await thumbnailDetail(ref.jobId, true);
        record = job.frames.find((f) => f.frame === ref.frame);
      }
      if (!record) return jsonAnswer({ error: { code: 'RB_BAD_ARGUMENT', message: `job ${ref.jobId} has no frame ${ref.frame}` } }, 404);
      if (record.state !== 'done') return jsonAnswer({ error: { code: 'RB_BAD_ARGUMENT', message: `frame ${ref.jobId}:${ref.frame} is ${record.state}: thumbnails are of done frames` } }, 404);
      const path = record.output ?? join(job.outputDir, frameFileName(job.spec.output?.pattern ?? DEFAULT_OUTPUT_PATTERN, record.frame));
      const { data, etag } = await o.thumbnails.get(path, width);
      if (req.headers['if-none-match'] === etag) return { status: 304, contentType: 'image/jpeg', body: '', headers: { etag } };
      // a done frame's file changes only when it is rendered again: the etag (size and mtime) says so
      return { contentType: 'image/jpeg', body: data, headers: { etag, 'cache-control': 'private, max-age=5' } };
    })],
    ['/api/jobs/:job/samples/:frame', guarded(async (req, { params }) => {
      const ref = frameRef(params);
      if ('contentType' in ref) return ref;
      // only a file the scheduler lists as the job's sample (the intake wrote it in .rb-samples/)
      const sample = (await jobDetail(ref.jobId)).outsourced?.samples?.find((x) => x.frame === ref.frame);
      if (!sample) return jsonAnswer({ error: { code: 'RB_BAD_ARGUMENT', message: `job ${ref.jobId} has no sample of frame ${ref.frame}` } }, 404);
      const { data, etag } = await o.thumbnails.get(sample.path, 160);
      if (req.headers['if-none-match'] === etag) return { status: 304, contentType: 'image/jpeg', body: '', headers: { etag } };
      return { contentType: 'image/jpeg', body: data, headers: { etag, 'cache-control': 'private, max-age=5' } };
    })],
    ['POST /api/jobs/:job/:action', guarded(async (req, { params }) => {
      const action = params.action as CtlRequest['action'];
      if (!ACTIONS.has(action)) return badRequest(`'${params.action}' is not an action (${[...ACTIONS].join(', ')})`);
      if (!isToken(params.job!)) return badRequest(`'${params.job}' is not a job id`);
      const refused = crossSite(req);
      if (refused) return refused;
      const body = await readJson(req);
      if ('contentType' in body) return body;
      const ctl: CtlRequest = { v: PROTOCOL_MAJOR, action, jobId: params.job! };
      if (action === 'priority') {
        const p = body.value.priority;
        if (!Number.isInteger(p) || (p as number) < 0 || (p as number) > 1000) return badRequest(`priority: ${JSON.stringify(p)} is not a whole number from 0 to 1000 (lower is more urgent)`);
        ctl.priority = p as number;
      }
      if (action === 'retry' && body.value.frames !== undefined) {
        const f = body.value.frames;
        if (!Array.isArray(f) || f.length === 0 || !f.every((n) => Number.isInteger(n) && n >= 0)) return badRequest(`frames: ${JSON.stringify(f)} is not a list of frame numbers`);
        ctl.frames = f as number[];
      }
      const { job } = await ask(fc, 'scheduler', ctlSubject(fc), codecs.ctlRequest, ctl, codecs.ctlReply);
      return jsonAnswer({ job });
    })],
  ]);
  return routes;
}

function frameRef(params: Record<string, string>): { jobId: string; frame: number } | HttpAnswer {
  const jobId = params.job!;
  if (!isToken(jobId)) return badRequest(`'${jobId}' is not a job id`);
  if (!/^\d{1,9}$/.test(params.frame!)) return badRequest(`'${params.frame}' is not a frame number`);
  return { jobId, frame: Number(params.frame) };
}

/**
 * Actions change the farm: a page from another site must not trigger them through the
 * operator's browser. Browsers send Origin on cross-site POSTs and cannot send a JSON content
 * type without a preflight this server never grants.
 */
function crossSite(req: IncomingMessage): HttpAnswer | null {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
  if (type !== 'application/json') return jsonAnswer({ error: { code: 'RB_BAD_ARGUMENT', message: 'actions take a JSON body: content-type application/json' } }, 415);
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== 'null') {
    let host: string;
    try {
      host = new URL(origin).host;
    } catch {
      host = '';
    }
    if (host !== req.headers.host) return jsonAnswer({ error: { code: 'RB_BAD_ARGUMENT', message: `actions come from the monitor's own pages, not from ${origin}` } }, 403);
  }
  return null;
}

async function readJson(req: IncomingMessage): Promise<{ value: Record<string, unknown> } | HttpAnswer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return jsonAnswer({ error: { code: 'RB_BAD_ARGUMENT', message: `the body is over ${MAX_BODY_BYTES} bytes` } }, 413);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return { value: {} };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return badRequest(`the body is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return badRequest('the body must be a JSON object');
  return { value: value as Record<string, unknown> };
}

/**
 * The last `max` bytes of a task log (`<output>/.rb-logs/<name>.log`, from a line start when
 * cut), or null when it is not there. The log sits in an artist's output folder: a symbolic link
 * at it, or at `.rb-logs`, is never read through (files/no-follow.ts) and reads as no log at all.
 */
export async function readTail(path: string | null, max: number): Promise<{ text: string; size: number } | null> {
  if (!path) return null;
  let opened: { fd: number; stats: Stats };
  try {
    await checkRealDir(dirname(dirname(path)), dirname(path));
    opened = await openToRead(path);
  } catch {
    return null;
  }
  const { fd, stats } = opened;
  try {
    const from = Math.max(0, stats.size - max);
    const buf = Buffer.alloc(stats.size - from);
    const { bytesRead } = await readFd(fd, buf, 0, buf.length, from);
    let text = buf.subarray(0, bytesRead).toString('utf8');
    if (from > 0) text = text.slice(text.indexOf('\n') + 1);
    return { text, size: stats.size };
  } finally {
    await closeFd(fd).catch(() => {});
  }
}

