import type { SchedulerOptions } from '../../actors/scheduler/index.ts';
import { DEFAULT_QUEUE_LIMITS, formatCount as n } from '../../actors/scheduler/queue-limits.ts';
import { DEFAULT_RETENTION } from '../../actors/scheduler/retention.ts';
import { UsageError } from './cli-error.ts';
import { parseCount } from './option-values.ts';

/** The scheduler's flags (`renderbus scheduler`, `renderbus up`) as commander hands them over. */
export interface SchedulerFlags {
  maxSiteFrames?: string;
  maxUserFrames?: string;
  maxJobFrames?: string;
  keepJobs?: string;
  keepHours?: string;
  peers?: string;
  outsourceUnrenderable?: string;
  outsourceOverflow?: string;
  sandboxAll?: boolean;
}

/** The flags' help texts, shared by `scheduler` and `up` so they say the same. */
export const SCHEDULER_FLAG_HELP = {
  maxSiteFrames: `frames the site holds queued or running at most; a submit past it is refused (RB_QUEUE_FULL) (default: ${n(DEFAULT_QUEUE_LIMITS.siteFrames)})`,
  maxUserFrames: `frames one user's jobs hold queued or running at most (default: ${n(DEFAULT_QUEUE_LIMITS.userFrames)})`,
  maxJobFrames: `frames in one job at most (default: ${n(DEFAULT_QUEUE_LIMITS.jobFrames)})`,
  keepJobs: `finished jobs kept in the scheduler's memory, the latest ones; older ones are read back from the journal when asked for (default: ${n(DEFAULT_RETENTION.keepJobs)})`,
  keepHours: `hours a finished job stays in the scheduler's memory at most (default: ${DEFAULT_RETENTION.keepMs / 3_600_000})`,
  peers: "the site's linked peers, comma-separated (e.g. v1,v2): a job whose `site` names one is sent there (docs/federation.md); a job naming any other site is refused (default: none)",
  sandboxAll: "the site's policy: every job renders in the I/O wrapper (bubblewrap), as if it said `sandbox: true`; a job cannot opt out (docs/security.md, \"The sandbox\")",
  outsourceOverflow: "the site's policy for a busy farm: a job that names no site, submitted while no matching slot here is idle or other frames are ahead of it, is quoted by these linked peers, comma-separated (e.g. v1,v2), and goes where it finishes first, here included, within its budget (docs/federation.md, \"Choosing where to render: quotes\"); without it such a job waits here (default: none)",
  outsourceUnrenderable: "the site's policy for a job that names no site and that no host here can render (the registry matches none): send it to the first of these linked peers, comma-separated in order of preference (e.g. v1,v2), as if it said `site` (docs/federation.md, \"Outsourcing by policy\"); without it such a job waits (default: none)",
} as const;

const SITE_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** A comma-separated list of site names (`--peers`, `--outsource-unrenderable`). Throws UsageError naming the flag. */
function siteList(flag: string, value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const names = value.split(',').map((p) => p.trim()).filter((p) => p !== '');
  const bad = names.find((p) => !SITE_NAME.test(p));
  if (bad !== undefined) throw new UsageError(`${flag}: '${bad}' is not a site name (a-z, 0-9, '-', '_', at most 64)`);
  const twice = names.find((p, i) => names.indexOf(p) !== i);
  if (twice !== undefined) throw new UsageError(`${flag}: '${twice}' is named twice`);
  return names;
}

/**
 * The scheduler's settings from its flags. Throws UsageError naming the flag. `site`, when known,
 * is the site's own name: the policy may not name it.
 */
export function schedulerSettings(flags: SchedulerFlags, site?: string): Pick<SchedulerOptions, 'limits' | 'retention' | 'peers' | 'outsourceUnrenderable' | 'outsourceOverflow' | 'sandboxAll'> {
  const frames = (flag: string, v: string | undefined) => (v === undefined ? undefined : parseCount(flag, v, { min: 1, max: 1_000_000_000 }));
  const limits = {
    siteFrames: frames('--max-site-frames', flags.maxSiteFrames),
    userFrames: frames('--max-user-frames', flags.maxUserFrames),
    // no job has more frames than a frame list may name
    jobFrames: flags.maxJobFrames === undefined ? undefined : parseCount('--max-job-frames', flags.maxJobFrames, { min: 1, max: DEFAULT_QUEUE_LIMITS.jobFrames }),
  };
  const retention = {
    keepJobs: flags.keepJobs === undefined ? undefined : parseCount('--keep-jobs', flags.keepJobs, { min: 0, max: 1_000_000 }),
    keepMs: flags.keepHours === undefined ? undefined : parseCount('--keep-hours', flags.keepHours, { min: 0, max: 100_000 }) * 3_600_000,
  };
  const set = <T extends object>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
  const peers = siteList('--peers', flags.peers) ?? [];
  const policyList = (flag: string, value: string | undefined) => {
    const policy = siteList(flag, value);
    if (policy === undefined) return undefined;
    if (policy.length === 0) throw new UsageError(`${flag}: name at least one peer (e.g. v1, or v1,v2 in order of preference)`);
    if (site !== undefined && policy.includes(site)) throw new UsageError(`${flag}: '${site}' is this site itself; name the peers to send to`);
    // with a fixed list of peers, a policy peer outside it is a mistake; a linked site's peers change while it runs
    const unknown = flags.peers === undefined ? undefined : policy.find((p) => !peers.includes(p));
    if (unknown !== undefined) throw new UsageError(`${flag}: '${unknown}' is not one of --peers (${peers.join(', ') || 'none'})`);
    return policy;
  };
  const policy = policyList('--outsource-unrenderable', flags.outsourceUnrenderable);
  const overflow = policyList('--outsource-overflow', flags.outsourceOverflow);
  return {
    limits: set(limits), retention: set(retention), ...(peers.length > 0 ? { peers } : {}), ...(policy ? { outsourceUnrenderable: policy } : {}),
    ...(overflow ? { outsourceOverflow: overflow } : {}), ...(flags.sandboxAll ? { sandboxAll: true } : {}),
  };
}
