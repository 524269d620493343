export { PeerCas, type CasOptions, type GcResult, type PutResult } from './cas.ts';
export { blobHash, peerName, refName } from './names.ts';
// durable writes the hot folders share: fsync a directory after a rename, write into an open file
export { syncDir } from './sync-dir.ts';
export { writeTo } from './write-to.ts';
export { diskUse } from './disk-use.ts';
