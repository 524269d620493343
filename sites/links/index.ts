export { linksConfig, QUARANTINE, type LinksConfig } from './nats-config.ts';
export { checkSiteLinks, newLeafPassword, dmzAccount, leafUser, PeerRole, DEFAULT_DMZ_QUOTA, type Peer, type SiteLinks, type DmzQuota } from './peer.ts';
export { startSiteLinks, type SiteLinksHandle, type SiteLinksOptions } from './link-service.ts';
