export { startRenderServer, type RenderServerOptions, type RenderServerHandle } from './runtime.ts';
export {
  renderServerMachine, undrainRefusal, MAX_MISSED_HEARTBEATS, REGISTER_RETRY_MAX_MS,
  type RenderServerMachine, type RenderServerContext, type RenderServerEvent,
} from './machine.ts';
export { probeHost, probePackage, probeBlender, povrayIncludes, kernelVersion, parseCpuinfo, parseMeminfo, parseOsRelease, type ProbeOptions } from './probe.ts';
export { startSimulatedFarm, simulatedInventory, type SimulatedFarm, type SimulatedFarmOptions } from './simulated.ts';
export { FailureStreak, STREAK_FIRST_REPORT, type StreakReport } from './failure-streak.ts';
export { BLENDER_PROBE_PY, GL_ENGINES, parseBlenderProbe, blenderPackage, type BlenderAnswer } from './blender-probe.ts';
