export * from './manifest.ts';
export * from './paths.ts';
export * from './msgpack-guard.ts';
export * from './chain.ts';
