import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { createActor, fromCallback, fromPromise, waitFor, type EventObject } from 'xstate';
import { call, listen, serve } from '../bus/index.ts';
import {
  codecFor, codecs, FarmError, HostInventory, newInstanceId, PROTOCOL_MAJOR, subjects, token,
  type AssignReply, type LeaseReport, type PackageInfo, type TaskAssignment,
  SANDBOX_PACKAGE,
} from '../../protocol/index.ts';
import { createAdapters, detectSandbox, Launcher, ResultTimeout, startRenderSlot, type SlotFactory, type SlotHandle, type TaskEnd } from '../render-slot/index.ts';
import { FailureStreak } from './failure-streak.ts';
import { renderServerMachine, undrainRefusal } from './machine.ts';
import { probeHost } from './probe.ts';

export interface RenderServerOptions {
  nc: NatsConnection;
  site: string;
  host: string;
  slots: number;
  log: Logger;
  /** Replaces the probed rendering packages (the `sandbox` package is still added when this host can sandbox). */
  packages?: PackageInfo[];
  /** False: no sandbox here, even when bubblewrap works (sandboxed jobs then go to other hosts). Default: when it works. */
  sandbox?: boolean;
  licenses?: string[];
  /** Heartbeat period (default 2000 ms); lease reports go out as often. */
  heartbeatMs?: number;
  /** How long running tasks may finish when the server is told to stop over the bus (default DEFAULT_GRACE_MS). */
  graceMs?: number;
  /** The host's inventory as it is, instead of probing this machine (a simulated farm, tests). */
  inventory?: HostInventory;
  /**
   * Makes the slots instead of startRenderSlot: a simulated farm's slots render by waiting
   * (actors/render-slot/simulated.ts). Then no renderer adapters and no fork server are set up.
   */
  slotFactory?: SlotFactory;
}

export interface RenderServerHandle {
  host: string;
  inventory: HostInventory;
  /**
   * Leaves the farm. With a grace period it drains first: takes no new tasks, hands back the
   * ones held in hand, and lets running ones finish for up to `graceMs`; what still runs then
   * is stopped and handed back. Then it says bye to the registry.
   */
  stop(o?: { graceMs?: number }): Promise<void>;
  /** Settles once the server has stopped, whoever asked (a signal, or a `stop` over the bus). */
  readonly stopped: Promise<void>;
}

type AssignBody = Extract<AssignReply, { ok: true }>['body'];

const inventoryCodec = codecFor(HostInventory);
const REGISTRY_TIMEOUT_MS = 2_000;
const BYE_TIMEOUT_MS = 1_000;
/** On stop, how long cancelled tasks get to end and report before the server leaves anyway. */
const STOP_SETTLE_MS = 8_000;
const MAX_SLOTS = 1024;
/** How long running tasks may finish when a render server is asked to stop (SIGTERM, `stop` request). */
export const DEFAULT_GRACE_MS = 60_000;

/**
 * One render host: probes itself, registers with the site's registry and keeps it informed,
 * serves `host.<host>.assign` (and `.ctl`), and runs one render slot per `slots`. Resolves
 * once the host is probed (registration goes on in the background until a registry answers).
 */
export async function startRenderServer(o: RenderServerOptions): Promise<RenderServerHandle> {
  const host = token('host', o.host);
  if (!Number.isInteger(o.slots) || o.slots < 1 || o.slots > MAX_SLOTS) {
    throw new FarmError('RB_BAD_ARGUMENT', `slots must be a whole number from 1 to ${MAX_SLOTS}, not ${o.slots}`);
  }
  const heartbeatMs = o.heartbeatMs ?? 2_000;
  if (!Number.isFinite(heartbeatMs) || heartbeatMs < 1) throw new FarmError('RB_BAD_ARGUMENT', `heartbeatMs must be a positive number of milliseconds, not ${heartbeatMs}`);
  const { nc, site } = o;
  const log = o.log.child({ actor: 'render-server', host });
  const serverId = newInstanceId();
  let launcher: Launcher | undefined;
  // each failed task is a warning line of its slot's; a streak of them gets a summary of its own
  const streak = new FailureStreak();
  const taskEnded = (end: TaskEnd) => {
    if (end.requested || end.status === 'returned') return; // nothing the host did wrong
    if (end.status === 'done') {
      const ended = streak.succeeded();
      if (ended) log.info({ failedInARow: ended.tasks, frames: ended.frames, codes: ended.codes }, 'a task succeeded again after failures in a row');
      return;
    }
    const r = streak.failed({ jobId: end.jobId, code: end.code ?? 'RB_RENDER_FAILED', frames: end.frames }, Date.now());
    if (r) log.warn({ failedInARow: r.tasks, frames: r.frames, codes: r.codes, jobs: r.jobs, since: new Date(r.since).toISOString() }, 'this host failed every task in a row');
  };
  let makeSlot = o.slotFactory;
  // whether this host can run the I/O wrapper: found once, advertised as the `sandbox` package
  const sandbox = !o.slotFactory && o.sandbox !== false ? detectSandbox() : Promise.resolve(null);
  if (!makeSlot) {
    const adapters = createAdapters();
    // renderers start from a small fork server: far cheaper than forking this process (launcher.ts)
    launcher = Launcher.available() ? new Launcher() : undefined;
    if (!launcher) log.warn('perl not found: renderers start with a direct spawn, which costs more per frame');
    makeSlot = (s) => startRenderSlot({ ...s, adapters, launcher, sandbox, onTaskEnd: taskEnded });
  }
  const slots: SlotHandle[] = [];
  const resultTimeout = new ResultTimeout(); // its slots talk to one scheduler: one estimate of its round trip
  for (let index = 0; index < o.slots; index++) {
    slots.push(makeSlot({ nc, site, host, serverId, index, log, resultTimeout }));
  }
  const slotInfos = () => slots.map((s) => s.info());
  let everRegistered = false;
  const leaseSubject = subjects.schedLeases(site, host);
  const reportLeases = (everyMs: number) => {
    const msg: LeaseReport = { v: PROTOCOL_MAJOR, host, serverId, at: Date.now(), everyMs, tasks: slots.flatMap((s) => s.leases()) };
    try {
      nc.publish(leaseSubject, codecs.leaseReport.encode(msg));
    } catch (err) {
      log.debug({ err }, 'could not publish the lease report');
    }
  };

  /** The host's `draining` and `undrained` events, for the registry, the monitor and `renderbus tail`. */
  const publishHostEvent = (event: 'draining' | 'undrained') => {
    try {
      nc.publish(subjects.hostEvent(site, host, event), codecs.hostEvent.encode({ v: PROTOCOL_MAJOR, host, event, at: Date.now(), serverId }));
    } catch (err) {
      log.warn({ err, event }, 'could not publish host event');
    }
  };

  const machine = renderServerMachine.provide({
    actors: {
      // checked like any message: bad `packages`/`licenses` options fail here, not at every registration
      probe: fromPromise(async () => {
        if (o.inventory) return inventoryCodec.check(o.inventory);
        const [inventory, box] = await Promise.all([probeHost({ packages: o.packages, licenses: o.licenses }), sandbox]);
        if (box) inventory.packages = [...inventory.packages.filter((p) => p.name !== SANDBOX_PACKAGE), { name: SANDBOX_PACKAGE, version: box.version }];
        else if (!o.slotFactory && o.sandbox !== false) log.info('this host cannot sandbox (bubblewrap missing, or no user namespaces): sandboxed jobs go to other hosts');
        return inventoryCodec.check(inventory);
      }),
      register: fromPromise(async ({ input }) =>
        call(
          nc,
          subjects.regRegister(site, host),
          codecs.hostRegister,
          { v: PROTOCOL_MAJOR, host, serverId, inventory: input.inventory, slots: slotInfos(), heartbeatMs },
          codecs.hostRegisterReply,
          { timeoutMs: REGISTRY_TIMEOUT_MS, unavailable: 'RB_REGISTRY_UNAVAILABLE' },
        ),
      ),
      heartbeat: fromPromise(async ({ input }) =>
        call(
          nc,
          subjects.regHeartbeat(site, host),
          codecs.hostHeartbeat,
          { v: PROTOCOL_MAJOR, host, serverId, slots: slotInfos(), load: loadavg()[0] ?? 0, draining: input.draining },
          codecs.hostHeartbeatReply,
          { timeoutMs: REGISTRY_TIMEOUT_MS, unavailable: 'RB_REGISTRY_UNAVAILABLE' },
        ),
      ),
      reportLeases: fromCallback<EventObject, { everyMs: number }>(({ input }) => {
        const timer = setInterval(() => reportLeases(input.everyMs), input.everyMs);
        // A scheduler that (re)starts asks for reports, to re-adopt running tasks before it
        // dispatches; results waiting out their backoff go at once. The same when our own
        // connection returns: a scheduler may have started while we were away.
        const schedulerBack = () => {
          reportLeases(input.everyMs);
          for (const s of slots) s.retryNow();
        };
        const hello = listen(nc, subjects.schedHello(site), codecs.schedHello, log, schedulerBack);
        let watching = true;
        void (async () => {
          for await (const st of nc.status()) {
            if (!watching) break;
            if (st.type === 'reconnect') schedulerBack();
          }
        })();
        return () => {
          watching = false;
          clearInterval(timer);
          hello.unsubscribe();
        };
      }),
      shutdown: fromPromise(async ({ input }) => {
        // held tasks go back to the scheduler; running ones are stopped and handed back too
        for (const s of slots) s.drain();
        for (const s of slots) if (!s.isIdle()) s.cancel('the render server is stopping', 'RB_DRAINING');
        await Promise.all(slots.map((s) => s.settled(STOP_SETTLE_MS)));
        for (const s of slots) {
          const taskId = s.heldResult();
          // its lease expires at the scheduler, which gives the frames to another slot
          if (taskId) log.warn({ taskId, slot: s.index }, 'stopping with a result the scheduler never took');
        }
        // also when it was re-registering: the registry takes a bye from a host it lost as well
        if (input.registered || everRegistered) {
          await call(nc, subjects.regBye(site, host), codecs.hostBye, { v: PROTOCOL_MAJOR, host, serverId }, codecs.hostByeReply, {
            timeoutMs: BYE_TIMEOUT_MS,
            unavailable: 'RB_REGISTRY_UNAVAILABLE',
          }).catch((err: unknown) => log.debug({ err }, 'registry did not take the bye'));
        }
      }),
    },
    actions: {
      drainSlots: () => {
        for (const s of slots) s.drain();
        publishHostEvent('draining');
      },
      undrainSlots: () => {
        for (const s of slots) s.undrain();
        publishHostEvent('undrained');
      },
      registered: (_, params) => {
        everRegistered = true;
        log.info({ registryId: params.registryId, serverId }, 'registered with the registry');
      },
    },
  });
  const actor = createActor(machine, { input: { host, heartbeatMs } });
  actor.subscribe({
    next: (snap) => log.debug({ state: snap.value }, 'render server state'),
    error: (err) => log.error({ err }, 'render server failed'),
  });

  const refusing = (): boolean => {
    const s = actor.getSnapshot();
    return s.status !== 'active' || s.context.draining || s.matches('stopping');
  };

  const assignOne = (a: TaskAssignment, receivedAt: number): { code: string; message: string } | null => {
    if (refusing()) return { code: 'RB_DRAINING', message: `render server ${host} is ${actor.getSnapshot().context.draining ? 'draining' : 'stopping'} and takes no new tasks` };
    const slot = slots[a.slot];
    if (!slot) return { code: 'RB_NO_SUCH_SLOT', message: `render server ${host} has slots 0 to ${slots.length - 1}, not ${a.slot}` };
    const held = slot.task();
    if (!slot.isIdle()) {
      // the same assignment again (a retried request) is already being worked on
      if (held && held.taskId === a.taskId && held.attempt === a.attempt) return null;
      return { code: 'RB_SLOT_BUSY', message: `slot ${a.slot} of ${host} is busy with task ${held?.taskId ?? '?'}` };
    }
    slot.assign(a, receivedAt);
    return null;
  };

  const subs: Subscription[] = [
    listen(nc, subjects.regHello(site), codecs.regHello, log, (hello) => {
      // the registry we are registered with, saying hello again (every 2 s) changes nothing: not
      // sent to the machine, whose every state ignores it then (a process of simulated hosts gets
      // thousands of these a second)
      if (hello.registryId !== actor.getSnapshot().context.registryId) actor.send({ type: 'registry.hello', registryId: hello.registryId });
    }),
    serve(nc, {
      subject: subjects.hostAssign(site, host),
      request: codecs.assignRequest,
      reply: codecs.assignReply,
      log,
      handle: (req): AssignBody => {
        const receivedAt = performance.now();
        if (req.host !== host) throw new FarmError('RB_UNKNOWN_HOST', `this is render server '${host}', the request is for '${req.host}'`);
        const body: AssignBody = { accepted: [], rejected: [] };
        for (const a of req.assignments) {
          const refused = assignOne(a, receivedAt);
          if (refused) body.rejected.push({ taskId: a.taskId, ...refused });
          else body.accepted.push(a.taskId);
        }
        if (body.rejected.length > 0) log.debug({ rejected: body.rejected }, 'assignments rejected');
        return body;
      },
    }),
    serve(nc, {
      subject: subjects.hostCtl(site, host),
      request: codecs.hostCtl,
      reply: codecs.hostCtlReply,
      log,
      handle: (req) => {
        if (req.action === 'drain') actor.send({ type: 'server.drain' });
        else if (req.action === 'undrain') {
          const refused = undrainRefusal(actor.getSnapshot());
          if (refused !== null) throw new FarmError('RB_DRAINING', `render server ${host} ${refused}`);
          actor.send({ type: 'server.undrain' });
        } else if (req.action === 'stop') setImmediate(() => void stop({ graceMs: o.graceMs ?? DEFAULT_GRACE_MS }));
        else if (req.action === 'return-task') {
          // only a task held in hand goes back (as a `returned` result); one that started goes on
          if (req.taskId !== undefined) slots.some((s) => s.returnHeld(req.taskId!, req.attempt));
        } else {
          const mine = (t: TaskAssignment | null) => t?.taskId === req.taskId && (req.attempt === undefined || t?.attempt === req.attempt);
          const slot = slots.find((s) => mine(s.task()));
          // a task held in hand is simply dropped: it never started
          const dropped = !slot && req.taskId !== undefined && slots.some((s) => s.dropHeld(req.taskId!, req.attempt));
          if (!dropped && (!slot || !req.taskId)) throw new FarmError('RB_NO_SUCH_SLOT', `no slot of ${host} is running task '${req.taskId ?? ''}'`);
          slot?.cancel('killed on request');
        }
        log.info({ action: req.action, taskId: req.taskId }, 'control request');
        return { host, action: req.action };
      },
    }),
  ];

  let stopping: Promise<void> | null = null;
  let markStopped!: () => void;
  const stopped = new Promise<void>((r) => (markStopped = r));
  const release = () => {
    for (const s of subs) s.unsubscribe();
    for (const s of slots) s.stop();
    launcher?.close();
    actor.stop();
  };
  const stop = (so: { graceMs?: number } = {}): Promise<void> => {
    stopping ??= (async () => {
      const graceMs = so.graceMs ?? 0;
      if (graceMs > 0 && actor.getSnapshot().status === 'active') {
        actor.send({ type: 'server.leave' }); // a drain that cannot be undone: it is leaving
        log.info({ graceMs, running: slots.filter((s) => !s.isIdle()).length }, 'draining: running tasks may finish');
        await Promise.all(slots.map((s) => s.settled(graceMs)));
      }
      actor.send({ type: 'server.stop' });
      await waitFor(actor, (s) => s.status !== 'active', { timeout: STOP_SETTLE_MS + 5_000 }).catch((err: unknown) => log.warn({ err }, 'render server did not stop in time'));
      release();
      log.info({ serverId }, 'render server stopped');
      markStopped();
    })();
    return stopping;
  };

  actor.start();
  const probed = await waitFor(actor, (s) => !s.matches('probing'));
  if (probed.status !== 'active' || !probed.context.inventory) {
    release();
    throw new FarmError('RB_BAD_ARGUMENT', `render server ${host} could not describe its host (check packages and licenses): ${probed.context.error ?? 'unknown error'}`);
  }
  const inventory = probed.context.inventory;
  log.info({ serverId, slots: slots.length, packages: inventory.packages.map((p) => `${p.name}@${p.version}`) }, 'render server started');
  const povray = inventory.packages.find((p) => p.name === 'povray');
  // probed (not offered by --packages) and without its standard includes: every ordinary scene would fail here
  if (povray?.includePath !== undefined && povray.includes === undefined) {
    log.warn(
      { includePath: povray.includePath, hint: 'Debian/Ubuntu: apt-get install povray-includes' },
      "POV-Ray is installed but its standard include files (colors.inc...) are not on its include path: scenes that #include them fail on this host",
    );
  }
  return { host, inventory, stop, stopped };
}
