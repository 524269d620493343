import type { NatsConnection } from '@nats-io/transport-node';
import {
  FarmError,
  PROTOCOL_MAJOR,
  codecs,
  subjects,
  type ErrorCode,
  type HostRecord,
  type ListBody,
  type ListRequest,
} from '../../protocol/index.ts';
import { call } from '../bus/index.ts';

/** Every host the registry holds, and the registry instance that listed them all. */
export interface AllHosts {
  registryId: string;
  hosts: HostRecord[];
}

/** Asks the registry for one page of `reg.list`. */
export type ListPageRequest = (req: ListRequest) => Promise<ListBody>;

/**
 * Every host of the site's registry, sorted by name, asking `reg.list` one page after another
 * (a large farm does not fit one reply). `timeoutMs` is for each page; `pageSize` caps the hosts
 * per page (the registry caps them anyway at what fits one message). Throws a FarmError: `call`'s
 * own when a page gets no answer (`unavailable`, default RB_REGISTRY_UNAVAILABLE), or when the
 * registry restarts during the listing twice in a row.
 */
export function listAllHosts(
  nc: NatsConnection,
  site: string,
  o: { timeoutMs: number; pageSize?: number; unavailable?: ErrorCode },
): Promise<AllHosts> {
  const subject = subjects.regList(site);
  const unavailable = o.unavailable ?? 'RB_REGISTRY_UNAVAILABLE';
  return pageAllHosts((req) => call(nc, subject, codecs.listRequest, req, codecs.listReply, { timeoutMs: o.timeoutMs, unavailable }), o.pageSize);
}

/**
 * The paging of listAllHosts over any way of asking for a page (the CLI asks through its own
 * `ask`, for its errors). A restarted registry (another registryId between pages) starts with an
 * empty database that fills as render servers register again, so the pages before it do not
 * join the ones after: the listing starts over, once.
 */
export async function pageAllHosts(page: ListPageRequest, pageSize?: number): Promise<AllHosts> {
  if (pageSize !== undefined && (!Number.isInteger(pageSize) || pageSize < 1)) {
    throw new FarmError('RB_BAD_ARGUMENT', `pageSize must be a whole number of hosts, at least 1, not ${pageSize}`);
  }
  const first = await pageThrough(page, pageSize);
  if ('hosts' in first) return first;
  const again = await pageThrough(page, pageSize);
  if ('hosts' in again) return again;
  const ids = `${first.restarted.join(' → ')}, then ${again.restarted.join(' → ')}`;
  throw new FarmError('RB_REGISTRY_UNAVAILABLE', `the registry restarted while its hosts were being listed, and again on the retry (registry ${ids}): try again once it runs steadily`, { retryable: true });
}

/** One pass over the pages: every host, or the two registry ids when the registry restarted midway. */
async function pageThrough(page: ListPageRequest, pageSize: number | undefined): Promise<AllHosts | { restarted: [string, string] }> {
  const hosts: HostRecord[] = [];
  let registryId: string | undefined;
  let after: string | undefined;
  for (;;) {
    const req: ListRequest = { v: PROTOCOL_MAJOR };
    if (after !== undefined) req.after = after;
    if (pageSize !== undefined) req.limit = pageSize;
    const body = await page(req);
    if (registryId !== undefined && body.registryId !== registryId) return { restarted: [registryId, body.registryId] };
    registryId = body.registryId;
    hosts.push(...body.hosts);
    // a registry older than paging sends no `more`: everything came in one reply
    if (body.more !== true) return { registryId, hosts };
    const last = body.hosts.at(-1)?.host;
    // a page that does not move the cursor would be asked for again and again
    if (last === undefined || (after !== undefined && last <= after)) {
      throw new FarmError('RB_REMOTE_UNKNOWN', `registry ${registryId} says more hosts follow, but its page ${last === undefined ? 'was empty' : `ended at '${last}', not after '${after}'`}`);
    }
    after = last;
  }
}
