export { PeerCas, type CasOptions, type GcResult, type PutResult } from './cas.ts';
export { blobHash, peerName, refName } from './names.ts';
