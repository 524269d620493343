export { startMonitor, DEFAULT_MONITOR_PORT, DEFAULT_SNAPSHOT_MS, type MonitorOptions, type MonitorHandle } from './runtime.ts';
export { monitorMachine, type Snapshot, type MonitorInput } from './machine.ts';
export { FarmModel, LATENCY_BUCKETS_S, MAX_FRAME_CHANGES, type MonitorEvent, type HostView, type JobView, type FarmFigures, type LatencyHistogram, type Applied, type FarmDelta, type FrameChange, type HostLive } from './model.ts';
export { SlotRuns, MAX_SPANS, type Span, type SpanOutcome, type SlotRun } from './slot-runs.ts';
export { startHttp, findRoute, publicRoute, SECURITY_HEADERS, type HttpOptions, type HttpHandle, type HttpAnswer, type Route, type RouteContext } from './http.ts';
export { checkAccess, hostAllowed, splitHost, isLoopbackAddress, readKey, sameSecret, TOKEN_HEADER, READ_COOKIE, type AccessPolicy, type AccessRequest, type AccessVerdict } from './http-access.ts';
