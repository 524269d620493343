export { startRegistry, type RegistryOptions } from './runtime.ts';
