export { startRegistry, type RegistryOptions } from './runtime.ts';
export { listAllHosts, pageAllHosts, type AllHosts, type ListPageRequest } from './list-client.ts';
