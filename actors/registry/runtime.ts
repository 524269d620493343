import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { createActor } from 'xstate';
import {
  FarmError,
  MAX_PAYLOAD,
  PROTOCOL_MAJOR,
  codecs,
  encodeAny,
  newInstanceId,
  subjects,
  toProfile,
  type HostEvent,
  type RegistryHello,
} from '../../protocol/index.ts';
import { callerOf, listen, serve } from '../bus/index.ts';
import { checkHeartbeat, checkRegistration, fitMatch, knownHost, listPage, matchHosts } from './database.ts';
import {
  registryMachine,
  registryPhase,
  type HostEventOut,
  type RegistryPhase,
} from './machine.ts';

export interface RegistryOptions {
  nc: NatsConnection;
  site: string;
  log: Logger;
  /** How often hello repeats, in ms (default 2000). */
  announceMs?: number;
  /** A host is dropped after this many of its heartbeat periods without one (default 3). */
  missedBeats?: number;
}

/** Bytes of a match or list reply kept for its envelope (v, ok, field names, array headers). */
const REPLY_MARGIN = 1_024;

/**
 * One term of the site's resource registry as its leader (leader.ts runs it while this process
 * holds the lease): binds the registry machine to the `reg.*` request subjects and the render
 * servers' slot events. The database starts empty and rebuilds itself as render servers see the
 * new registryId and register again.
 */
export async function startRegistryTerm(
  o: RegistryOptions,
): Promise<{ registryId: string; stop(): Promise<void> }> {
  const announceMs = o.announceMs ?? 2_000;
  const missedBeats = o.missedBeats ?? 3;
  if (!Number.isInteger(announceMs) || announceMs < 1) {
    const got = String(announceMs);
    throw new FarmError('RB_BAD_ARGUMENT', `announceMs must be a positive integer, got ${got}`);
  }
  if (!Number.isInteger(missedBeats) || missedBeats < 1) {
    const got = String(missedBeats);
    throw new FarmError('RB_BAD_ARGUMENT', `missedBeats must be a positive integer, got ${got}`);
  }
  const { nc, site } = o;
  const helloSubject = subjects.regHello(site); // checks the site token before anything starts
  const registryId = newInstanceId();
  const log = o.log.child({ actor: 'registry', site, registryId });

  const publish = (subject: string, data: Uint8Array): void => {
    try {
      nc.publish(subject, data);
    } catch (err) {
      log.warn({ err, subject }, 'could not publish');
    }
  };

  const machine = registryMachine.provide({
    actions: {
      announce: () => {
        const hello: RegistryHello = { v: PROTOCOL_MAJOR, registryId, at: Date.now(), announceMs };
        publish(helloSubject, codecs.regHello.encode(hello));
      },
      publishHostEvent: (_, e: HostEventOut) => {
        const { host, event, at, serverId, reason } = e;
        const evt: HostEvent = { v: PROTOCOL_MAJOR, host, event, at, serverId };
        if (reason !== undefined) evt.reason = reason;
        log.info({ host, serverId, reason }, event === 'up' ? 'host up' : 'host down');
        publish(subjects.hostEvent(site, host, event), codecs.hostEvent.encode(evt));
      },
    },
  });

  const actor = createActor(machine, {
    input: {
      registryId,
      announceMs,
      missedBeats,
      // a drop happens at most this late; cheap, as a sweep is one pass over the hosts
      sweepMs: Math.max(10, Math.min(1_000, Math.floor(announceMs / 2))),
      // render servers notice a new registry within one hello or one heartbeat
      rebuildMs: Math.round(announceMs * 1.5),
      now: Date.now,
    },
  });
  let phase: RegistryPhase = 'starting';
  actor.subscribe({
    next: (s) => {
      const p = registryPhase(s);
      if (p !== phase) {
        log.debug({ from: phase, to: p, hosts: s.context.db.size }, 'registry phase');
        phase = p;
      }
    },
    error: (err) => log.error({ err }, 'registry machine failed'),
  });
  actor.start();
  const db = () => actor.getSnapshot().context.db;
  // what one reply may carry: the server's max_payload (ours at most), less the envelope
  const replyBudget = () => Math.min(MAX_PAYLOAD, nc.info?.max_payload ?? MAX_PAYLOAD) - REPLY_MARGIN;

  const subs: Subscription[] = [
    serve(nc, {
      subject: subjects.allRegRegister(site),
      request: codecs.hostRegister,
      reply: codecs.hostRegisterReply,
      log,
      handle: (req, msg) => {
        callerOf(msg.subject, 'the registration', req.host); // nobody registers as another host
        checkRegistration(req);
        actor.send({ type: 'host.register', msg: req });
        return { registryId };
      },
    }),
    serve(nc, {
      subject: subjects.allRegHeartbeat(site),
      request: codecs.hostHeartbeat,
      reply: codecs.hostHeartbeatReply,
      log,
      handle: (req, msg) => {
        callerOf(msg.subject, 'the heartbeat', req.host);
        checkHeartbeat(req);
        actor.send({ type: 'host.heartbeat', msg: req });
        return { known: knownHost(db(), req.host, req.serverId) !== undefined, registryId };
      },
    }),
    serve(nc, {
      subject: subjects.allRegBye(site),
      request: codecs.hostBye,
      reply: codecs.hostByeReply,
      log,
      handle: (req, msg) => {
        callerOf(msg.subject, 'the goodbye', req.host);
        actor.send({ type: 'host.bye', msg: req });
        return {};
      },
    }),
    serve(nc, {
      subject: subjects.regMatch(site),
      request: codecs.matchRequest,
      reply: codecs.matchReply,
      log,
      handle: (req) => {
        const profile = toProfile(req.requirements); // RB_BAD_SPEC names the field
        const body = matchHosts(db(), profile, { freeOnly: req.freeOnly });
        // at most what one message carries (thousands of hosts do not fit): the most free first
        return fitMatch(body, replyBudget(), encodeAny({ closest: body.closest, totalHosts: body.totalHosts }).length, (h) => encodeAny(h).length);
      },
    }),
    serve(nc, {
      subject: subjects.regList(site),
      request: codecs.listRequest,
      reply: codecs.listReply,
      log,
      handle: (req) => {
        // a page at a time: every host of a large farm does not fit one message
        const fixed = encodeAny({ registryId, more: true }).length;
        const page = listPage(db(), { after: req.after, limit: req.limit, budget: replyBudget(), fixed, sizeOf: (h) => encodeAny(h).length });
        return { registryId, ...page };
      },
    }),
    listen(nc, subjects.allHostSlotEvents(site), codecs.hostEvent, log, (evt, subject) => {
      const subjectHost = subject.split('.')[4];
      if (evt.host !== subjectHost || evt.slot === undefined || evt.serverId === undefined) {
        const has = { slot: evt.slot !== undefined, serverId: evt.serverId !== undefined };
        log.debug({ subject, host: evt.host, has }, 'ignored slot event');
        return;
      }
      actor.send({ type: 'host.slot', host: evt.host, serverId: evt.serverId, slot: evt.slot });
    }),
  ];

  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') actor.send({ type: 'bus.down' });
      else if (s.type === 'reconnect') actor.send({ type: 'bus.up' });
    }
  })();

  // hello only once the server holds our subscriptions, so nobody registers into the void. If
  // the connection drops meanwhile (nats-server restarting), the subscriptions are sent again on
  // reconnect: a daemon goes on rather than failing its start (found by the chaos suite).
  await nc.flush().catch((err: unknown) => log.warn({ err }, 'connection dropped while starting; going on'));
  actor.send({ type: 'registry.started' });
  log.info({ announceMs, missedBeats }, 'registry started');

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all(
        subs.map(async (s) => {
          try {
            await s.drain();
          } catch {
            // the connection is closing or closed: nothing left to drain
          }
        }),
      );
      actor.send({ type: 'registry.stop' });
      actor.stop();
      log.info({ hosts: db().size }, 'registry stopped');
    })();
    return stopping;
  };
  return { registryId, stop };
}
