export { runForLeadership, type LeaderTerm, type LeaseCheck, type LeadershipHandle, type LeadershipOptions } from './runtime.ts';
export { DEFAULT_LEADERSHIP_TIMING, leadershipMachine, type LeadershipTiming } from './machine.ts';
export { LEADER_ROLES, readLeases } from './leases.ts';
