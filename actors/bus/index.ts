export { connectBus, connectClient, type BusOptions } from './connect.ts';
export { serve, call, listen, type ServeOptions } from './rpc.ts';
