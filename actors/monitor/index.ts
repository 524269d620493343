export { startMonitor, DEFAULT_MONITOR_PORT, DEFAULT_SNAPSHOT_MS, type MonitorOptions, type MonitorHandle } from './runtime.ts';
export { monitorMachine, type Snapshot, type MonitorInput } from './machine.ts';
export { FarmModel, LATENCY_BUCKETS_S, type MonitorEvent, type HostView, type JobView, type FarmFigures, type LatencyHistogram, type Applied } from './model.ts';
export { startHttp, type HttpOptions, type HttpHandle, type HttpAnswer, type Route } from './http.ts';
