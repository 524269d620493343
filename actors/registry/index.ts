export { startRegistry, type RegistryLeaderHandle, type RegistryLeaderOptions } from './leader.ts';
export { startRegistryTerm, type RegistryOptions } from './runtime.ts';
export { listAllHosts, pageAllHosts, type AllHosts, type ListPageRequest } from './list-client.ts';
