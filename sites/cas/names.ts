import { FarmError, isToken } from '../../protocol/index.ts';

const SHA256_HEX = /^[0-9a-f]{64}$/;
// a reference names a bundle or a job: no separator, no leading dot, so never a path of its own
const REF_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A peer name as it becomes a directory: a NATS subject token, nothing else (no '/', '.', '..'). */
export function peerName(peer: string): string {
  if (typeof peer !== 'string' || !isToken(peer)) {
    throw new FarmError('RB_BAD_PEER', `peer '${String(peer).slice(0, 80)}' is not a NATS token (a-z, 0-9, '-', '_', at most 64)`);
  }
  return peer;
}

/** A blob's name: the sha256 of its bytes, 64 lowercase hex (so it can never leave its directory). */
export function blobHash(hash: string): string {
  if (typeof hash !== 'string' || !SHA256_HEX.test(hash)) {
    throw new FarmError('RB_BAD_BLOB', `blob hash '${String(hash).slice(0, 80)}' is not 64 lowercase hex digits`);
  }
  return hash;
}

/** A reference's name (a bundle id or a job id). */
export function refName(name: string): string {
  if (typeof name !== 'string' || !REF_NAME.test(name)) {
    throw new FarmError('RB_BAD_ARGUMENT', `reference '${String(name).slice(0, 80)}' is not a bundle or job id (A-Z, a-z, 0-9, '.', '-', '_', at most 128, not starting with '.')`);
  }
  return name;
}
