import type { TSchema } from '@sinclair/typebox';
import { HostCtl, HostEvent } from './messages/host-events.ts';
import { JournalEntry } from './messages/journal.ts';
import { Leadership } from './messages/leadership.ts';
import { HostBye, HostByeReply, HostHeartbeat, HostHeartbeatReply, HostRegister, HostRegisterReply, ListReply, ListRequest, MatchReply, MatchRequest, RegistryHello } from './messages/registry.ts';
import { CtlReply, CtlRequest, FrameEvent, JobEvent, QueryReply, QueryRequest, SubmitReply, SubmitRequest } from './messages/scheduler.ts';
import { LeaseReport, SchedulerHello } from './messages/lease.ts';
import { HostsReply, HostsRequest, LimitsReply, LimitsRequest } from './messages/limits.ts';
import { SharesReply, SharesRequest } from './messages/shares.ts';
import { BudgetsReply, BudgetsRequest } from './messages/budgets.ts';
import { AssignReply, AssignRequest, TaskResult, TaskResultReply } from './messages/task.ts';
import { Reply } from './messages/common.ts';
import { NotifyEvent } from './messages/notify.ts';
import { RemoteUpdate, RemoteUpdateReply } from './messages/outsource.ts';
import { IntakeReply, IntakeRequest } from './messages/intake.ts';
import { LoadReply, LoadRequest } from './messages/quote.ts';
import { Type } from '@sinclair/typebox';

export interface SubjectEntry {
  subject: string;
  kind: 'request' | 'event' | 'journal';
  from: string;
  to: string;
  what: string;
  message: [string, TSchema];
  reply?: [string, TSchema];
}

/** Every subject the farm uses, with its message schemas: docs/protocol.md is generated from this. */
export const catalog: SubjectEntry[] = [
  { subject: 'rb.<site>.reg.hello', kind: 'event', from: 'registry', to: 'render servers', what: 'The registry announces itself at start and every few seconds; a new registryId means it restarted.', message: ['RegistryHello', RegistryHello] },
  { subject: 'rb.<site>.reg.register.<host>', kind: 'request', from: 'render server (its own host only)', to: 'registry', what: 'A render server registers its host: inventory and slots.', message: ['HostRegister', HostRegister], reply: ['HostRegisterReply', HostRegisterReply] },
  { subject: 'rb.<site>.reg.heartbeat.<host>', kind: 'request', from: 'render server (its own host only)', to: 'registry', what: 'Periodic slot states; `known: false` in the reply asks the server to register again.', message: ['HostHeartbeat', HostHeartbeat], reply: ['HostHeartbeatReply', HostHeartbeatReply] },
  { subject: 'rb.<site>.reg.bye.<host>', kind: 'request', from: 'render server (its own host only)', to: 'registry', what: 'A render server leaves on purpose.', message: ['HostBye', HostBye], reply: ['HostByeReply', HostByeReply] },
  { subject: 'rb.<site>.reg.match', kind: 'request', from: 'scheduler, operator, intake', to: 'registry', what: 'The resource list: hosts matching a resource profile, with their free slots; the closest misses when none match.', message: ['MatchRequest', MatchRequest], reply: ['MatchReply', MatchReply] },
  { subject: 'rb.<site>.reg.list', kind: 'request', from: 'artist, operator, scheduler, monitor', to: 'registry', what: 'The whole resource database (`renderbus hosts`).', message: ['ListRequest', ListRequest], reply: ['ListReply', ListReply] },
  { subject: 'rb.<site>.sched.submit.<user>', kind: 'request', from: 'artist or operator (its own user only)', to: 'scheduler', what: 'Submit a job as the user the subject names (the job\'s `user`; a job naming another is refused); answered once the job is stored durably.', message: ['SubmitRequest', SubmitRequest], reply: ['SubmitReply', SubmitReply] },
  { subject: 'rb.<site>.sched.query', kind: 'request', from: 'artist, operator, notifier, monitor', to: 'scheduler', what: 'List jobs, or one job with every frame.', message: ['QueryRequest', QueryRequest], reply: ['QueryReply', QueryReply] },
  { subject: 'rb.<site>.sched.ctl.<user>', kind: 'request', from: 'artist or operator (its own user only)', to: 'scheduler', what: 'Steer one of the user\'s own jobs (another\'s is refused, RB_FORBIDDEN): cancel, pause, resume, release, retry, priority; answered once the action is journaled.', message: ['CtlRequest', CtlRequest], reply: ['CtlReply', CtlReply] },
  { subject: 'rb.<site>.sched.limits', kind: 'request', from: 'artist, operator, monitor', to: 'scheduler', what: 'List the site\'s named limits (licences); changes only on op.limits.', message: ['LimitsRequest', LimitsRequest], reply: ['LimitsReply', LimitsReply] },
  { subject: 'rb.<site>.sched.shares', kind: 'request', from: 'artist, operator, monitor', to: 'scheduler', what: 'List the projects\' fair-share weights; changes only on op.shares.', message: ['SharesRequest', SharesRequest], reply: ['SharesReply', SharesReply] },
  { subject: 'rb.<site>.sched.budgets', kind: 'request', from: 'artist, operator, monitor', to: 'scheduler', what: 'List the projects\' outsourcing budgets and what the vendors\' bills spent; changes only on op.budgets.', message: ['BudgetsRequest', BudgetsRequest], reply: ['BudgetsReply', BudgetsReply] },
  { subject: 'rb.<site>.sched.hosts', kind: 'request', from: 'artist, operator, monitor', to: 'scheduler', what: 'The sick hosts (failed frames of several jobs: no work for a while); clearing one only on op.hosts.', message: ['HostsRequest', HostsRequest], reply: ['HostsReply', HostsReply] },
  { subject: 'rb.<site>.sched.intake.<peer>', kind: 'request', from: 'intake (the peer is the subject\'s last token)', to: 'scheduler', what: 'Submit a peer\'s job (outsourced to this site), once per origin: the same origin again answers the job it made (`existing`); or cancel it. The job keeps its `origin` (journaled) and runs as user `peer:<peer>`.', message: ['IntakeRequest', IntakeRequest], reply: ['IntakeReply', IntakeReply] },
  { subject: 'rb.<site>.op.ctl', kind: 'request', from: 'operator, monitor', to: 'scheduler', what: 'Steer any job, as sched.ctl does for its owner.', message: ['CtlRequest', CtlRequest], reply: ['CtlReply', CtlReply] },
  { subject: 'rb.<site>.op.limits', kind: 'request', from: 'operator', to: 'scheduler', what: 'List, set or remove the site\'s named limits; answered once a change is journaled.', message: ['LimitsRequest', LimitsRequest], reply: ['LimitsReply', LimitsReply] },
  { subject: 'rb.<site>.op.shares', kind: 'request', from: 'operator', to: 'scheduler', what: 'List, set or remove the projects\' fair-share weights; answered once a change is journaled.', message: ['SharesRequest', SharesRequest], reply: ['SharesReply', SharesReply] },
  { subject: 'rb.<site>.op.budgets', kind: 'request', from: 'operator', to: 'scheduler', what: 'List, set or clear the projects\' outsourcing budgets; answered once a change is journaled.', message: ['BudgetsRequest', BudgetsRequest], reply: ['BudgetsReply', BudgetsReply] },
  { subject: 'rb.<site>.op.hosts', kind: 'request', from: 'operator', to: 'scheduler', what: 'The sick hosts, or clear one.', message: ['HostsRequest', HostsRequest], reply: ['HostsReply', HostsReply] },
  { subject: 'rb.<site>.sched.result.<host>', kind: 'request', from: 'render server (its own host only; the scheduler takes it only from the host holding the lease)', to: 'scheduler', what: 'A task ended (outputs already in storage); the reply may hand the slot its next task.', message: ['TaskResult', TaskResult], reply: ['TaskResultReply', TaskResultReply] },
  { subject: 'rb.<site>.sched.leases.<host>', kind: 'event', from: 'render server (its own host only)', to: 'scheduler', what: 'Every heartbeat period (and at once after a scheduler hello): the tasks the server holds leases for. Renews them; a restarted scheduler re-adopts them.', message: ['LeaseReport', LeaseReport] },
  { subject: 'rb.<site>.sched.remote.<peer>', kind: 'request', from: 'intake (only it may publish here)', to: 'scheduler', what: 'News of a job this site outsourced to <peer>, from one bundle that peer sent (status, frames already written into the output folder, the bill\'s totals); taken only for a job sent to that same peer, once per bundle, journaled before it is answered.', message: ['RemoteUpdate', RemoteUpdate], reply: ['RemoteUpdateReply', RemoteUpdateReply] },
  { subject: 'rb.<site>.sched.load', kind: 'request', from: 'site-link (only it may publish here)', to: 'scheduler', what: 'How loaded the queue is for a job of a renderer and a priority: frames queued or running at that priority or more urgent, and the renderer\'s measured ms per frame; what the site\'s quote to a peer starts from (docs/federation.md, "Choosing where to render: quotes").', message: ['LoadRequest', LoadRequest], reply: ['LoadReply', LoadReply] },
  { subject: 'rb.<site>.sched.hello', kind: 'event', from: 'scheduler', to: 'render servers', what: 'A scheduler started serving, or its connection came back: render servers report their leases at once.', message: ['SchedulerHello', SchedulerHello] },
  { subject: 'rb.<site>.host.<host>.assign', kind: 'request', from: 'scheduler', to: 'render server', what: 'Lease tasks to idle slots of one host.', message: ['AssignRequest', AssignRequest], reply: ['AssignReply', AssignReply] },
  { subject: 'rb.<site>.host.<host>.ctl', kind: 'request', from: 'operator, scheduler', to: 'render server', what: 'Steer a render server (kill a task, drain, undrain, stop).', message: ['HostCtl', HostCtl], reply: ['HostCtlReply', Reply(Type.Object({ host: Type.String(), action: Type.String() }))] },
  { subject: 'rb.<site>.evt.job.<job>.<event>', kind: 'event', from: 'scheduler', to: 'anyone', what: 'Job events: submitted, outsourced (sent to a linked site: the packer writes its bundle), started, progress, waiting, done, failed, cancelled.', message: ['JobEvent', JobEvent] },
  { subject: 'rb.<site>.evt.frame.<job>.<frame>.<event>', kind: 'event', from: 'scheduler, render server', to: 'anyone', what: 'Frame events: dispatched, retrying, done, failed (scheduler); started, progress, stats (render server: the running process\'s live figures every 2 s).', message: ['FrameEvent', FrameEvent] },
  { subject: 'rb.<site>.evt.notify.<job>.<event>', kind: 'event', from: 'notifier', to: 'anyone', what: 'Notifications of a job (its end, its progress every N%): sent (a webhook answered 2xx, or the SMTP server took the email) or failed (given up, with the error). One per webhook URL, and one per email, each time. The notifier learns what a job asks for from the journal\'s submit records (live) or from `sched.query`.', message: ['NotifyEvent', NotifyEvent] },
  { subject: 'rb.<site>.evt.host.<host>.<event>', kind: 'event', from: 'render server, registry', to: 'anyone', what: 'Host events: slot, draining and undrained (render server), up and down (registry).', message: ['HostEvent', HostEvent] },
  { subject: 'rb.<site>.journal.<kind>', kind: 'journal', from: 'scheduler', to: 'scheduler (replay)', what: 'The durable journal in JetStream stream RB_<SITE>_JOURNAL: submit, task, cancel, ctl, limit, share, remote and outsource records (a job the policy of the site sent to a peer); task records appended together go in one batch message.', message: ['JournalEntry', JournalEntry] },
  { subject: '$KV.RB_<SITE>_LEADERS.<role>', kind: 'journal', from: 'the leading scheduler or registry (each its own key: scheduler, registry)', to: 'its standbys (read every 250 ms), and operators (renderbus leaders)', what: 'The leadership lease of a role in the JetStream KV bucket RB_<SITE>_LEADERS: rewritten every 250 ms by the leader with a write that expects its last revision; a standby claims it once the revision has not changed for 4 s on its own clock, or at once when the leader deleted it on stopping (docs/architecture.md, "Leadership").', message: ['Leadership', Leadership] },
];
