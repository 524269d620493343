import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { codecs, streams, subjects, type HostTurn } from '../../protocol/index.ts';

/**
 * Each host's last `up` and `down` event from the site's event stream (kept 7 days), for
 * `renderbus hosts`: the scheduler reads it on the CLI's behalf, since only the farm's services
 * touch JetStream. No stream yet: no host has left, and that is all.
 */
export async function readHostTurns(nc: NatsConnection, site: string, timeoutMs: number): Promise<HostTurn[]> {
  try {
    const js = jetstream(nc, { timeout: timeoutMs });
    const consumer = await js.consumers.get(streams.events(site), { filter_subjects: subjects.allHostEvents(site), deliver_policy: DeliverPolicy.LastPerSubject });
    const pending = (await consumer.info()).num_pending;
    if (pending === 0) return [];
    const turns: HostTurn[] = [];
    const messages = await consumer.fetch({ max_messages: pending, expires: timeoutMs });
    for await (const m of messages) {
      const event = m.subject.split('.')[5];
      if (event === 'up' || event === 'down') {
        try {
          const e = codecs.hostEvent.decode(m.data);
          const turn: HostTurn = { host: e.host, event, at: e.at };
          if (e.reason !== undefined) turn.reason = e.reason;
          if (e.serverId !== undefined) turn.serverId = e.serverId;
          turns.push(turn);
        } catch {
          // an event that no longer decodes says nothing about the host
        }
      }
      if (m.info.pending === 0) break;
    }
    return turns;
  } catch {
    return [];
  }
}
