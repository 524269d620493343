export { connectBus, connectClient, loginOptions, type BusOptions } from './connect.ts';
export { serve, call, listen, timedOut, type ServeOptions } from './rpc.ts';
export { callerOf } from './identity.ts';
export { replicasOf } from './replicas.ts';
