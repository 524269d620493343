import { codecFor } from './codec.ts';
import { HostCtl, HostEvent } from './messages/host-events.ts';
import { JobSpec } from './messages/job-spec.ts';
import {
  HostBye, HostByeReply, HostHeartbeat, HostHeartbeatReply, HostRegister, HostRegisterReply,
  ListReply, ListRequest, MatchReply, MatchRequest, RegistryHello,
} from './messages/registry.ts';
import {
  CtlReply, CtlRequest, FrameEvent, JobEvent, JobReply, JobsReply, QueryReply, QueryRequest, SubmitReply, SubmitRequest,
} from './messages/scheduler.ts';
import { AssignReply, AssignRequest, TaskResult, TaskResultReply } from './messages/task.ts';
import { Reply } from './messages/common.ts';
import { JournalEntry, JournalRecord } from './messages/journal.ts';
import { LeaseReport, SchedulerHello } from './messages/lease.ts';
import { Leadership } from './messages/leadership.ts';
import { HostsReply, HostsRequest, LimitsReply, LimitsRequest } from './messages/limits.ts';
import { SharesReply, SharesRequest } from './messages/shares.ts';
import { BudgetsReply, BudgetsRequest } from './messages/budgets.ts';
import { RemoteUpdate, RemoteUpdateReply } from './messages/outsource.ts';
import { LoadReply, LoadRequest, QuoteReply, QuoteRequest, QuotesReply, QuotesRequest } from './messages/quote.ts';
import { NotifyEvent } from './messages/notify.ts';
import { IntakeReply, IntakeRequest } from './messages/intake.ts';
import { WebhookPayload } from './messages/notify-payload.ts';
import { Type } from '@sinclair/typebox';

/** One compiled codec per message; runtimes and tools use these, never raw msgpack. */
export const codecs = {
  jobSpec: codecFor(JobSpec),
  regHello: codecFor(RegistryHello),
  hostRegister: codecFor(HostRegister),
  hostRegisterReply: codecFor(HostRegisterReply),
  hostHeartbeat: codecFor(HostHeartbeat),
  hostHeartbeatReply: codecFor(HostHeartbeatReply),
  hostBye: codecFor(HostBye),
  hostByeReply: codecFor(HostByeReply),
  matchRequest: codecFor(MatchRequest),
  matchReply: codecFor(MatchReply),
  listRequest: codecFor(ListRequest),
  listReply: codecFor(ListReply),
  submitRequest: codecFor(SubmitRequest),
  submitReply: codecFor(SubmitReply),
  queryRequest: codecFor(QueryRequest),
  jobsReply: codecFor(JobsReply),
  jobReply: codecFor(JobReply),
  queryReply: codecFor(QueryReply),
  ctlRequest: codecFor(CtlRequest),
  ctlReply: codecFor(CtlReply),
  assignRequest: codecFor(AssignRequest),
  assignReply: codecFor(AssignReply),
  taskResult: codecFor(TaskResult),
  taskResultReply: codecFor(TaskResultReply),
  jobEvent: codecFor(JobEvent),
  frameEvent: codecFor(FrameEvent),
  hostEvent: codecFor(HostEvent),
  hostCtl: codecFor(HostCtl),
  journalRecord: codecFor(JournalRecord),
  journalEntry: codecFor(JournalEntry),
  leaseReport: codecFor(LeaseReport),
  schedHello: codecFor(SchedulerHello),
  leadership: codecFor(Leadership),
  limitsRequest: codecFor(LimitsRequest),
  limitsReply: codecFor(LimitsReply),
  sharesRequest: codecFor(SharesRequest),
  sharesReply: codecFor(SharesReply),
  budgetsRequest: codecFor(BudgetsRequest),
  budgetsReply: codecFor(BudgetsReply),
  hostsRequest: codecFor(HostsRequest),
  hostsReply: codecFor(HostsReply),
  hostCtlReply: codecFor(Reply(Type.Object({ host: Type.String(), action: Type.String() }))),
  notifyEvent: codecFor(NotifyEvent),
  webhookPayload: codecFor(WebhookPayload),
  remoteUpdate: codecFor(RemoteUpdate),
  remoteUpdateReply: codecFor(RemoteUpdateReply),
  intakeRequest: codecFor(IntakeRequest),
  intakeReply: codecFor(IntakeReply),
  quoteRequest: codecFor(QuoteRequest),
  quoteReply: codecFor(QuoteReply),
  quotesRequest: codecFor(QuotesRequest),
  quotesReply: codecFor(QuotesReply),
  loadRequest: codecFor(LoadRequest),
  loadReply: codecFor(LoadReply),
};
