export {
  renderSlotMachine, failedResult, wireError,
  SLOT_RESULT_RETRY_BASE_MS, SLOT_RESULT_RETRY_MAX_MS, SLOT_REAP_TIMEOUT_MS,
  type RenderSlotMachine, type RenderSlotContext, type RenderSlotEvent,
  type PreparedTask, type RenderOutcome, type SlotResult, type ReportOutput,
} from './machine.ts';
export {
  startRenderSlot, prepareTask, renderTask, deliverTask,
  type RenderSlot, type RenderSlotOptions, type RenderTaskOptions, type TaskEnd, type AdapterLookup, type SlotHandle, type SlotFactory,
} from './runtime.ts';
export { simulatedSlots, startSimulatedSlot, type SimulationOptions, type SimulatedSlotOptions } from './simulated.ts';
export { SimTimers, type SimTimer } from './sim-timers.ts';
export { ResultTimeout, RESULT_TIMEOUT_MIN_MS, RESULT_TIMEOUT_MAX_MS } from './result-timeout.ts';
export { SimStats, Histogram, type SimStatsSnapshot, type TaskSource } from './sim-stats.ts';
export { runProcess, sampleTree, type RunOptions, type RunningProcess, type ProcessExit, type ProcessUsage, type LogSink } from './process.ts';
export { TaskLog } from './task-log.ts';
export { rendererEnv, PASSED_ENV } from './renderer-env.ts';
export { Launcher, type LaunchHandlers } from './launcher.ts';
export { detectSandbox, type SandboxHost } from './sandbox-host.ts';
export { sandboxArgv, inputBinds, type SandboxPlan } from './sandbox.ts';
export { taskPaths, prepareDirs, storeFrames, moveFrames, sizeFrames, removeWorkDir, outputDiskFull, diskDeliveryFs, PARTIAL_DIR, LOGS_DIR, type TaskPaths, type StoredFrame, type MissingFrame, type DeliveryFs } from './output.ts';
export * from './adapters/index.ts';
