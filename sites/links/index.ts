export { linksConfig, QUARANTINE, type LinksConfig } from './nats-config.ts';
export { checkSiteLinks, newLeafPassword, dmzAccount, leafUser, PeerRole, DEFAULT_DMZ_QUOTA, DEFAULT_PEER_QUOTA_BYTES, type Peer, type SiteLinks, type DmzQuota } from './peer.ts';
export { readSiteStore, writeSiteStore, updateSiteStore, ensureSite, addPeer, removePeer, setPeerKey, setPeerQuota, linksOf, checkSiteStore, checkListen, isSiteKey, dmzPublicKey, siteStorePath, type SiteStore, type StoredPeer, type NewPeer } from './peer-store.ts';
export { encodeInvitation, decodeInvitation, INVITATION_VERSION, type Invitation } from './invitation.ts';
export { loadSiteKey, verifySiteSignature, siteKeyPath, type SiteKey } from './site-key.ts';
export { linkChange, LinkChange } from './link-change.ts';
export { startSiteLinks, type SiteLinksHandle, type SiteLinksOptions } from './link-service.ts';
export { serveLinkRelease } from './link-release.ts';
export { signOutgoing } from './bundle-sign.ts';
