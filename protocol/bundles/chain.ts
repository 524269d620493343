import { FarmError } from '../errors.ts';
import type { JobSpec } from '../messages/job-spec.ts';
import type { BundleManifest } from './manifest.ts';

/*
 * Chaining (docs/federation.md, "Chaining"): a site may pass a peer's job on to one of its own
 * peers when the job's owner consented (`chain: true`). Pure rules on the manifest's `route`:
 *
 * - a **job** bundle's route is the path the job came along, ending with its sender:
 *   `[studio]` from the studio, `[studio, v1]` when v1 passes it on to v2;
 * - a **news** bundle's route (status, results, bill) is where the job went from the sender on,
 *   starting with the sender: `[v1, v2]` from v1 means v1 passed it to v2, which renders it.
 */

/** The most sites a job's path may hold, its owner and the site rendering it included. */
export const MAX_CHAIN_SITES = 4;

type JobHead = Pick<BundleManifest, 'bundleId' | 'from' | 'route'> & { job?: Pick<JobSpec, 'chain'> | undefined; jobRef?: BundleManifest['jobRef'] };

/** The path a job bundle came along: its route, or just its sender for a bundle that names none. */
export function jobPath(m: Pick<BundleManifest, 'from' | 'route'>): string[] {
  return m.route.length > 0 ? [...m.route] : [m.from];
}

const shown = (path: readonly string[]) => path.join(' → ');

/**
 * Why `site` refuses a job bundle for its path, or undefined when the path is fine: a path that
 * does not end with the sender (RB_BAD_BUNDLE), one that names this site or a site twice
 * (RB_CHAIN_LOOP: it would go round), a job passed on without its owner's consent, or a path that
 * would hold more than MAX_CHAIN_SITES sites with this one (RB_CHAIN_REFUSED).
 */
export function chainProblem(site: string, m: JobHead): FarmError | undefined {
  const path = jobPath(m);
  const what = m.jobRef ? `${m.jobRef.site}'s job ${m.jobRef.job}` : `bundle ${m.bundleId}`;
  if (path[path.length - 1] !== m.from) return new FarmError('RB_BAD_BUNDLE', `bundle ${m.bundleId}: its path ${shown(path)} does not end with its sender ${m.from}`);
  if (path.includes(site) || new Set(path).size !== path.length) {
    return new FarmError('RB_CHAIN_LOOP', `${what} came along ${shown(path)}, which ${path.includes(site) ? `already passed this site (${site})` : 'names a site twice'}: refused, it would go round`);
  }
  if (path.length > 1 && m.job?.chain !== true) {
    return new FarmError('RB_CHAIN_REFUSED', `${what} was passed on along ${shown(path)}, but ${path[0]} did not consent to chaining (chain: true)`);
  }
  if (path.length + 1 > MAX_CHAIN_SITES) {
    return new FarmError('RB_CHAIN_REFUSED', `${what} came along ${shown(path)}: with ${site} its path would hold ${path.length + 1} sites, more than ${MAX_CHAIN_SITES}`);
  }
  return undefined;
}

/**
 * Where `site` may pass on a job that came along `path`: the first of `candidates` (the site's
 * policy, in order of preference, linked now) that the path has not passed, when the job's owner
 * consented and the path has room for one more site; otherwise why not.
 */
export function forwardChoice(spec: Pick<JobSpec, 'chain'>, path: readonly string[], site: string, candidates: readonly string[]): { to: string } | { why: string } {
  if (spec.chain !== true) return { why: `${path[0] ?? 'its owner'} did not consent to its being passed on (chain: true)` };
  if (path.length + 2 > MAX_CHAIN_SITES) return { why: `its path ${shown([...path, site])} has no room for another site (at most ${MAX_CHAIN_SITES})` };
  if (candidates.length === 0) return { why: `${site} passes jobs it cannot render to no linked peer (--outsource-unrenderable)` };
  const to = candidates.find((c) => c !== site && !path.includes(c));
  if (to === undefined) return { why: `every peer ${site} would pass it to (${candidates.join(', ')}) is already on its path ${shown(path)}` };
  return { to };
}

/** The route of the job bundle `site` writes to pass on a job that came along `path`. */
export function forwardRoute(path: readonly string[], site: string): string[] {
  return [...path, site];
}

/**
 * The sites beyond `peer` that a news bundle from `peer` says the job went through (`[v2]` for a
 * route `[v1, v2]` from v1); empty for a job the peer renders itself. A route that does not start
 * with the sender, names a site twice, names the receiver or is longer than the limit is refused.
 */
export function newsVia(site: string, peer: string, m: Pick<BundleManifest, 'bundleId' | 'route'>): string[] {
  if (m.route.length === 0) return [];
  const bad = (why: string) => new FarmError('RB_BAD_BUNDLE', `bundle ${m.bundleId} from ${peer}: its route ${shown(m.route)} ${why}`);
  if (m.route[0] !== peer) throw bad(`does not start with its sender ${peer}`);
  if (new Set(m.route).size !== m.route.length || m.route.includes(site)) throw bad('names a site twice');
  if (m.route.length + 1 > MAX_CHAIN_SITES) throw bad(`is longer than the chain limit (${MAX_CHAIN_SITES} sites)`);
  return m.route.slice(1);
}
