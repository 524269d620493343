export { readCredentials, writeCredentials, parseCredentials, describeCredentials } from './credentials-file.ts';
export { issuePrincipal, revokePrincipal, listPrincipals, localCredsPath, publicKeyOf, type IssuedPrincipal } from './principals.ts';
export { prepareSiteAuth, applySiteAuth, localPrincipals, authUsers, natsDir, keyOf } from './site-auth.ts';
