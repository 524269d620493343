import { runForLeadership, type LeadershipTiming } from '../leadership/index.ts';
import { startRegistryTerm, type RegistryOptions } from './runtime.ts';

/** How long a start waits to know whether it leads: past it, it returns and keeps trying (the bus may be down). */
const SETTLE_MS = 2_000;

export interface RegistryLeaderOptions extends RegistryOptions {
  /** Replicas of the leaders bucket (default: as the server says, replicasOf). */
  replicas?: number;
  /** The leadership lease's clock (tests shorten it); default DEFAULT_LEADERSHIP_TIMING. */
  leadership?: Partial<LeadershipTiming>;
}

export interface RegistryLeaderHandle {
  /** The id of this process's latest term ('' before its first): render servers register again when it changes. */
  readonly registryId: string;
  leading(): boolean;
  stop(): Promise<void>;
}

/**
 * A resource registry that may stand by: it runs for the site's registry lease and runs a term
 * while it holds it. A takeover is a registry start: a new registryId, which render servers see
 * in its hello and register again, so the standby needs no state of its own (docs/cluster.md).
 */
export async function startRegistry(o: RegistryLeaderOptions): Promise<RegistryLeaderHandle> {
  let current: { registryId: string } | null = null;
  const leadership = await runForLeadership({
    nc: o.nc, site: o.site, role: 'registry', log: o.log.child({ actor: 'registry', site: o.site }), replicas: o.replicas,
    ...(o.leadership ? { timing: o.leadership } : {}),
    lead: async () => {
      const term = await startRegistryTerm(o);
      current = term;
      return {
        stop: () => term.stop(),
      };
    },
  });
  const role = await leadership.settledWithin(SETTLE_MS).catch(async (err: unknown) => {
    await leadership.stop();
    throw err;
  });
  if (role === 'standby') o.log.info({ site: o.site }, 'registry standing by: another registry leads this site');
  if (role === 'unsettled') o.log.warn({ site: o.site }, 'the registry cannot reach its leaders bucket yet; it keeps trying');
  return {
    get registryId() {
      return current?.registryId ?? '';
    },
    leading: () => leadership.leading(),
    stop: () => leadership.stop(),
  };
}
