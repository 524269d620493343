import { FarmError, isToken, type MatchBody, type WaitReason } from '../../protocol/index.ts';
import type { Job } from './job-book.ts';

/*
 * The site's policy for jobs no local host can render (docs/federation.md, "Outsourcing by
 * policy"): `--outsource-unrenderable v1,v2` sends such a job to the first of those peers that is
 * linked, exactly as if its description had said `site: v1`. Pure: the runtime asks the registry,
 * journals the decision (an `outsource` record) and applies it with outsource.ts.
 */

/** What the policy makes of one queued job in a dispatch round. */
export type PolicyVerdict =
  /** Send it to `peer`; `why` is what the registry said of the local hosts, for people. */
  | { send: string; why: string }
  /** No local host can render it, yet the policy keeps it here: why (added to its wait reason). */
  | { keep: string };

/**
 * Checks the policy's peers (in order of preference) against the site's own name: RB_BAD_ARGUMENT
 * for a name that is no site name, named twice, or the site itself. `flag`: the policy's name in
 * the message (the overflow policy is checked the same way).
 */
export function checkPolicy(prefer: readonly string[], site: string, flag = 'outsource-unrenderable'): void {
  const seen = new Set<string>();
  for (const p of prefer) {
    if (!isToken(p)) throw new FarmError('RB_BAD_ARGUMENT', `${flag}: '${p}' is not a site name`);
    if (p === site) throw new FarmError('RB_BAD_ARGUMENT', `${flag}: '${p}' is this site itself; name the peers to send to`);
    if (seen.has(p)) throw new FarmError('RB_BAD_ARGUMENT', `${flag}: '${p}' is named twice`);
    seen.add(p);
  }
}

/**
 * Whether the registry's answer says that no local host can render the job: hosts are registered
 * and none of their inventories matches its requirements (the registry names the closest ones).
 * Busy, draining, sick or bad hosts that match do not count: the job waits for them. An empty
 * registry does not either: a farm starting up has not heard its hosts yet.
 */
export function noLocalHost(match: MatchBody | undefined): boolean {
  return match !== undefined && match.totalHosts > 0 && match.hosts.length === 0 && match.closest.length > 0;
}

/**
 * How long the registry must have said, round after round, that no local host can render a job
 * before the policy sends it. Sending cannot be undone, and a registry that restarted hears its
 * hosts again only as they answer its hellos (every 2 s): until then it knows some of them.
 */
export const UNRENDERABLE_SETTLE_MS = 5_000;

/**
 * The policy's verdict on a queued job, given the registry's answer for its requirements, how
 * long the registry has said that no local host can render it (`seenForMs`, noLocalHost in every
 * round since), the peers the policy prefers (in order) and the peers linked now. Undefined when
 * the policy has nothing to say (no policy, a job some local host can render, one already sent).
 * A job that started here (a frame ran, or runs), that waits for jobs of this site (`after`,
 * `afterFrames`: the vendor cannot see them), or that a peer sent us (it would go round) is kept,
 * with why; so is every job when none of the preferred peers is linked, and for a moment a job
 * that just became unrenderable (UNRENDERABLE_SETTLE_MS). `budgetSpent`: why the job's project may
 * send nothing out (project-budgets.ts spentWhy): the job is kept, saying so.
 */
export function unrenderableVerdict(job: Job, match: MatchBody | undefined, seenForMs: number, prefer: readonly string[], linked: readonly string[], budgetSpent?: string): PolicyVerdict | undefined {
  if (prefer.length === 0 || job.spec.site !== undefined || job.remote !== undefined) return undefined;
  if (!noLocalHost(match)) return undefined;
  const first = prefer.length === 1 ? prefer[0]! : `any of ${prefer.join(', ')}`;
  // a peer's job goes on only with its owner's consent, and never back to the peer it came from
  // (the intake checked the whole path before taking it: protocol/bundles/chain.ts)
  if (job.origin && job.spec.chain !== true) return { keep: `it came from ${job.origin.site}, and a peer's job is sent on only with its owner's consent (chain: true)` };
  if (job.origin) prefer = prefer.filter((p) => p !== job.origin!.site);
  if (job.startedAt !== undefined || job.runningTasks > 0 || job.counts.done > 0 || job.counts.failed > 0) {
    return { keep: 'it started here, so it waits for a host here that can render it' };
  }
  if ((job.spec.after?.length ?? 0) > 0 || (job.spec.afterFrames?.length ?? 0) > 0) {
    return { keep: `it waits for jobs of this site (after, afterFrames), which ${first} cannot see` };
  }
  const peer = prefer.find((p) => linked.includes(p));
  if (peer === undefined) {
    if (prefer.length === 0) return { keep: `the site's policy names only ${job.origin!.site}, where it came from` };
    return { keep: `${prefer.join(', ')} ${prefer.length === 1 ? 'is' : 'are'} not ${prefer.length === 1 ? 'a linked peer' : 'linked peers'} (${linked.length === 0 ? 'no peers are linked' : `linked: ${linked.join(', ')}`})` };
  }
  if (budgetSpent !== undefined) return { keep: `${budgetSpent}, so it is not sent to ${peer}` };
  if (seenForMs < UNRENDERABLE_SETTLE_MS) {
    return { keep: `it goes to ${peer} in ${Math.ceil((UNRENDERABLE_SETTLE_MS - seenForMs) / 1000)} s unless a host that can render it registers` };
  }
  return { send: peer, why: `no host here can render it (${nearest(match!)})` };
}

/** The hosts that came closest, as the registry named them. */
function nearest(m: MatchBody): string {
  return m.closest.slice(0, 2).map((c) => `${c.host} ${c.missing.join(', ')}`).join('; ');
}

/** A wait reason with the policy's word on why it keeps the job here. */
export function withPolicyNote(reason: WaitReason, keep: string): WaitReason {
  return { ...reason, text: `${reason.text}; not outsourced by the site's policy: ${keep}` };
}
