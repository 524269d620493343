import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FarmError } from '../../protocol/index.ts';

/**
 * A site's signing key (Ed25519, node:crypto): it signs the manifests of the bundles the site
 * sends (`manifest.sig`), bills above all, so a peer can show a bundle was issued by this site.
 * The public half travels in the invitation and the join answer (`renderbus site invite/join`)
 * and is kept in the peer's record.
 */
export interface SiteKey {
  /** The public key, SPKI DER in base64url: what a peer stores to check our signatures. */
  publicKey: string;
  sign(bytes: Uint8Array): Uint8Array;
}

export const siteKeyPath = (dataDir: string) => join(dataDir, 'fed', 'site-key.pem');

/** The site's key from `<data>/fed/site-key.pem` (0600), made on first use. */
export async function loadSiteKey(dataDir: string): Promise<SiteKey> {
  const path = siteKeyPath(dataDir);
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
    if (((await stat(path)).mode & 0o077) !== 0) await chmod(path, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    try {
      await writeFile(path, pem, { flag: 'wx', mode: 0o600 });
    } catch (e) {
      // another process made it first: use theirs
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      pem = await readFile(path, 'utf8');
    }
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (cause) {
    throw new FarmError('RB_BAD_ARGUMENT', `${path} is not a private key in PEM: move it away and a new key is made (peers must then be given the new public key)`, { cause });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new FarmError('RB_BAD_ARGUMENT', `${path} holds a ${key.asymmetricKeyType} key, not ed25519`);
  const publicKey = createPublicKey(key).export({ type: 'spki', format: 'der' }).toString('base64url');
  return { publicKey, sign: (bytes) => new Uint8Array(sign(null, bytes, key)) };
}

/** Whether `signature` over `bytes` was made by the site whose public key (base64url SPKI) is given. */
export function verifySiteSignature(publicKey: string, bytes: Uint8Array, signature: Uint8Array): boolean {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(publicKey, 'base64url'), format: 'der', type: 'spki' });
  } catch (cause) {
    throw new FarmError('RB_BAD_PEER', `the peer's public key is not an ed25519 key in base64url SPKI`, { cause });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new FarmError('RB_BAD_PEER', `the peer's public key is ${key.asymmetricKeyType}, not ed25519`);
  return verify(null, bytes, key, signature);
}
