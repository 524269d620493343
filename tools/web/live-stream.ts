import { randomBytes } from 'node:crypto';
import type { FarmModel, Route } from '../../actors/monitor/index.ts';

/**
 * `GET /api/live`: the model's changes as server-sent events. The first message holds the whole
 * view (`full: true`); then, at most every `intervalMs`, one `delta` message with what changed.
 * Each message's id is `<instance>:<version>`, so a browser that reconnects (EventSource sends
 * the last id back) gets just what it missed, or everything when the monitor restarted or it is
 * too far behind. A comment every 15 s keeps proxies from closing an idle stream.
 */
export function liveRoute(model: FarmModel, site: string, intervalMs = 500): Route {
  const instance = randomBytes(4).toString('hex');
  return (req, { res, url }) => {
    const last = String(req.headers['last-event-id'] ?? url.searchParams.get('since') ?? '');
    const [inst, ver] = last.split(':');
    let since: number | undefined = inst === instance && /^\d+$/.test(ver ?? '') ? Number(ver) : undefined;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write('retry: 2000\n\n');
    let quietSince = Date.now();
    const send = () => {
      if (since !== undefined && model.version === since) {
        if (Date.now() - quietSince > 15_000) {
          res.write(': still here\n\n');
          quietSince = Date.now();
        }
        return;
      }
      const d = model.changesSince(since);
      since = d.version;
      quietSince = Date.now();
      res.write(`id: ${instance}:${d.version}\nevent: delta\ndata: ${JSON.stringify({ site, ...d })}\n\n`);
    };
    send();
    const timer = setInterval(send, intervalMs);
    // the browser went away, or the monitor's server closed every connection on stop
    req.on('close', () => {
      clearInterval(timer);
      res.end();
    });
    return null;
  };
}
