import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { createActor, fromCallback, fromPromise, waitFor } from 'xstate';
import { codecFor, codecs, LinkStatusReply, LinkStatusRequest, PROTOCOL_MAJOR, subjects } from '../../protocol/index.ts';
import { call } from '../bus/index.ts';
import { listAllHosts } from '../registry/index.ts';
import { listAllJobs } from '../scheduler/index.ts';
import { startHttp, type HttpHandle, type Route } from './http.ts';
import { READ_COOKIE, readKey } from './http-access.ts';
import { monitorMachine, type Snapshot } from './machine.ts';
import { LATENCY_BUCKETS_S, type FarmModel, type MonitorEvent } from './model.ts';

export const DEFAULT_MONITOR_PORT = 8080;
export const DEFAULT_SNAPSHOT_MS = 5_000;
const linkStatusRequest = codecFor(LinkStatusRequest);
const linkStatusReply = codecFor(LinkStatusReply);

export interface MonitorOptions {
  nc: NatsConnection;
  site: string;
  log: Logger;
  /** HTTP port (default 8080; 0: any free port). */
  port?: number;
  /** Address the HTTP server binds (default 127.0.0.1, whatever address NATS listens on). */
  listen?: string;
  /**
   * The access token: actions need it, and so does every request from another machine
   * (actors/monitor/http-access.ts). Without one the monitor is read-only, and on loopback only.
   */
  token?: string;
  /** More `Host` names the HTTP server answers to besides 127.0.0.1, localhost, [::1] and this machine's addresses. */
  hosts?: string[];
  /** When the port is taken, take a free one instead of failing (`renderbus up` does). */
  portFallback?: boolean;
  /** Time between snapshots of the scheduler's jobs and the registry's hosts (default 5 s). */
  snapshotMs?: number;
  /** Time a snapshot request may take (default 2 s). */
  requestTimeoutMs?: number;
  now?: () => number;
}

export interface MonitorHandle {
  /** Where `/metrics` and `/healthz` are served, `http://host:port`. */
  readonly url: string;
  /** The address the HTTP server is bound to, as the system reports it (`127.0.0.1`, `0.0.0.0`). */
  readonly bound: string;
  /** The HTTP port was taken and another was chosen. */
  readonly fellBack: boolean;
  /** The live model (read-only use: the web monitor's routes). */
  readonly model: FarmModel;
  /** More routes for the HTTP server (e.g. the web UI), behind the same access check. */
  readonly routes: Map<string, Route>;
  stop(): Promise<void>;
}

/**
 * Binds the monitor machine to NATS and HTTP: every event on `rb.<site>.evt.>` goes to the model,
 * snapshots come from `sched.query {what:'jobs'}` and `reg.list` (each may fail alone), and
 * `GET /metrics` serves the model in Prometheus text format (prom-client, a private registry).
 */
export async function startMonitor(o: MonitorOptions): Promise<MonitorHandle> {
  const { nc, site } = o;
  const log = o.log.child({ actor: 'monitor', site });
  const now = o.now ?? Date.now;
  const timeoutMs = o.requestTimeoutMs ?? 2_000;

  const busEvents = fromCallback<{ type: 'monitor.stop' }>(({ sendBack }) => {
    const prefix = `rb.${site}.evt.`;
    const decoders: Record<string, (data: Uint8Array) => MonitorEvent> = {
      job: (d) => ({ kind: 'job', evt: codecs.jobEvent.decode(d) }),
      frame: (d) => ({ kind: 'frame', evt: codecs.frameEvent.decode(d) }),
      host: (d) => ({ kind: 'host', evt: codecs.hostEvent.decode(d) }),
    };
    const sub = nc.subscribe(subjects.allEvents(site), {
      callback: (err, msg) => {
        if (err) return void log.warn({ err }, 'subscription error');
        const area = msg.subject.slice(prefix.length).split('.', 1)[0] ?? '';
        const decode = decoders[area];
        if (!decode) return; // notify events and anything newer: not the monitor's business
        let event: MonitorEvent;
        try {
          event = decode(msg.data);
        } catch (e) {
          log.debug({ err: e, subject: msg.subject }, 'dropped malformed event');
          return;
        }
        sendBack({ type: 'bus.event', event });
      },
    });
    return () => sub.unsubscribe();
  });

  const snapshot = fromPromise<Snapshot>(async () => {
    const at = now();
    const [jobs, hosts, sick, links] = await Promise.allSettled([
      listAllJobs(nc, site, { timeoutMs }), // page after page: thousands of jobs do not fit one reply
      listAllHosts(nc, site, { timeoutMs }),
      call(nc, subjects.schedHosts(site), codecs.hostsRequest, { v: PROTOCOL_MAJOR, action: 'sick' }, codecs.hostsReply, { timeoutMs, unavailable: 'RB_SCHEDULER_UNAVAILABLE' }),
      // the site's links, for the Sites panel: on a farm that is no linked site nobody answers (no problem)
      call(nc, subjects.linkStatus(site), linkStatusRequest, { v: PROTOCOL_MAJOR }, linkStatusReply, { timeoutMs }),
    ]);
    const s: Snapshot = { at, errors: [] };
    if (jobs.status === 'fulfilled') s.jobs = jobs.value;
    else s.errors.push({ from: 'scheduler', error: jobs.status === 'rejected' ? errorText(jobs.reason) : 'unexpected reply' });
    if (hosts.status === 'fulfilled') s.hosts = hosts.value.hosts;
    else s.errors.push({ from: 'registry', error: errorText(hosts.reason) });
    // the jobs' error already says the scheduler is missing; the sick list adds nothing then
    if (sick.status === 'fulfilled') s.sick = sick.value.sick;
    s.links = links.status === 'fulfilled' ? links.value.links : null;
    return s;
  });

  const registry = new Registry();
  const latency = new Histogram({ name: 'renderbus_dispatch_latency_seconds', help: 'Time a render slot stood idle, with no task, before its next task reached it (frame started events, waitMs)', buckets: [...LATENCY_BUCKETS_S], registers: [registry] });

  let lastProblems = '';
  const machine = monitorMachine.provide({
    actors: { events: busEvents, snapshot },
    actions: {
      latencyObserved: (_, s: number) => latency.observe(s),
      snapshotProblems: (_, errors) => {
        // log a change of situation once, not every round of an outage
        const text = errors.map((e) => `${e.from}: ${e.error}`).join('; ');
        if (text === lastProblems) return;
        lastProblems = text;
        if (text === '') log.info('snapshots answered again');
        else log.warn({ problems: errors }, 'snapshot incomplete; the model keeps what it had');
      },
    },
  });
  const actor = createActor(machine, { input: { snapshotMs: o.snapshotMs ?? DEFAULT_SNAPSHOT_MS } });
  actor.subscribe({ error: (err) => log.error({ err }, 'monitor machine failed') });
  actor.start();
  const model = actor.getSnapshot().context.model;
  registerGauges(registry, model);

  const routes = new Map<string, Route>([
    ['/metrics', async () => ({ contentType: registry.contentType, body: await registry.metrics() })],
    ['/healthz', () => {
      const ctx = actor.getSnapshot().context;
      const body = JSON.stringify({ ok: true, site, state: actor.getSnapshot().value, snapshots: ctx.snapshots, failedSnapshots: ctx.failedSnapshots, jobsSnapshotAt: model.jobsSnapshotAt ?? null, hostsSnapshotAt: model.hostsSnapshotAt ?? null });
      return { contentType: 'application/json', body: `${body}\n` };
    }],
    // what this client may do; shown the token, it gets the cookie that lets a browser on
    // another machine read (EventSource and images cannot send the header)
    ['/api/access', (_req, { access }) => {
      const body = `${JSON.stringify({ site, actions: access.token, loopback: access.loopback })}\n`;
      const headers: Record<string, string> = {};
      if (access.token && o.token !== undefined) headers['set-cookie'] = `${READ_COOKIE}=${readKey(o.token)}; Path=/; HttpOnly; SameSite=Strict`;
      return { contentType: 'application/json', body, headers };
    }],
  ]);
  let http: HttpHandle;
  try {
    http = await startHttp({ port: o.port ?? DEFAULT_MONITOR_PORT, host: o.listen, fallback: o.portFallback, routes, access: { ...(o.token !== undefined ? { token: o.token } : {}), hosts: o.hosts ?? [] }, onError: (err, path) => log.error({ err, path }, 'HTTP route failed') });
  } catch (err) {
    actor.stop();
    throw err;
  }
  await nc.flush().catch((err: unknown) => log.warn({ err }, 'connection dropped while starting; going on'));
  log.info({ url: http.url, bound: http.bound, fellBack: http.fellBack, token: o.token !== undefined, hosts: o.hosts ?? [] }, 'monitor started');

  let stopping: Promise<void> | null = null;
  return {
    url: http.url,
    bound: http.bound,
    fellBack: http.fellBack,
    model,
    routes,
    stop: () => {
      stopping ??= (async () => {
        actor.send({ type: 'monitor.stop' });
        await waitFor(actor, (s) => s.status === 'done', { timeout: 1_000 }).catch(() => {});
        actor.stop();
        await http.close();
        log.info('monitor stopped');
      })();
      return stopping;
    },
  };
}

/** The model's figures as Prometheus metrics, read from the model at each scrape. */
function registerGauges(registry: Registry, model: FarmModel): void {
  let figures = model.figures();
  // collect() runs per metric and scrape; the first one reads the model for all of them
  const fresh = () => (figures = model.figures());
  new Gauge({ name: 'renderbus_jobs', help: 'Jobs the scheduler holds, by state', labelNames: ['state'], registers: [registry], collect() {
    fresh();
    for (const [state, n] of Object.entries(figures.jobsByState)) this.set({ state }, n);
  } });
  new Counter({ name: 'renderbus_frames_done_total', help: 'Frames rendered (frame done events) since the monitor started', registers: [registry], collect() {
    this.reset();
    this.inc(figures.framesDone);
  } });
  new Counter({ name: 'renderbus_frames_failed_total', help: 'Frames given up after their last attempt (frame failed events) since the monitor started', registers: [registry], collect() {
    this.reset();
    this.inc(figures.framesFailed);
  } });
  new Counter({ name: 'renderbus_frame_retries_total', help: 'Failed attempts queued again (frame retrying events) since the monitor started', registers: [registry], collect() {
    this.reset();
    this.inc(figures.framesRetried);
  } });
  new Gauge({ name: 'renderbus_slots', help: 'Render slots of the hosts that are up, by state (busy, free, draining)', labelNames: ['state'], registers: [registry], collect() {
    for (const [state, n] of Object.entries(figures.slots)) this.set({ state }, n);
  } });
  new Gauge({ name: 'renderbus_hosts_up', help: 'Render hosts registered and alive', registers: [registry], collect() {
    this.set(figures.hostsUp);
  } });
  new Gauge({ name: 'renderbus_hosts_sick', help: 'Render hosts the scheduler holds sick (failed frames of several jobs lately): they get no work until cleared or their time passes', registers: [registry], collect() {
    this.set(figures.hostsSick);
  } });
  new Gauge({ name: 'renderbus_host_load', help: '1-minute load average of each render host that is up (from its heartbeat, via the registry)', labelNames: ['host'], registers: [registry], collect() {
    this.reset();
    for (const h of figures.hostLoad) this.set({ host: h.host }, h.load);
  } });
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${(err as { code?: string }).code ?? err.name}: ${err.message}` : String(err);
}
