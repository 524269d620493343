import type { NatsConnection } from '@nats-io/transport-node';
import type { MonitorHandle } from '../../actors/monitor/index.ts';
import { apiRoutes } from './api.ts';
import { liveRoute } from './live-stream.ts';
import { staticRoutes } from './static.ts';
import { ThumbnailCache } from './thumbnails.ts';

export { apiRoutes, readTail, LOG_TAIL_BYTES } from './api.ts';
export { liveRoute } from './live-stream.ts';
export { ThumbnailCache } from './thumbnails.ts';

/**
 * Puts the web monitor on a running monitor's HTTP server: its pages at `/`, the JSON API under
 * `/api/`, the live stream at `/api/live`. Stopping the monitor closes them all.
 */
export function addWebMonitor(monitor: MonitorHandle, o: { nc: NatsConnection; site: string }): void {
  const routes = new Map([...staticRoutes(), ...apiRoutes({ nc: o.nc, site: o.site, model: monitor.model, thumbnails: new ThumbnailCache() }), ['/api/live', liveRoute(monitor.model, o.site)]]);
  for (const [path, route] of routes) monitor.routes.set(path, route);
}
