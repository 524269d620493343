export { startScheduler, type SchedulerLeaderHandle, type SchedulerLeaderOptions } from './leader.ts';
export { startSchedulerTerm, type SchedulerOptions, type SchedulerHandle } from './runtime.ts';
export { schedulerMachine } from './machine.ts';
export { jobMachine } from './job-machine.ts';
export { JobBook, projectOf, TaskState, type Job, type Task } from './job-book.ts';
export { ProjectBudgets } from './project-budgets.ts';
export { planDispatch, waitingReason } from './dispatch.ts';
export { listAllJobs, pageAllJobs, pageWholeJob, wholeJob, type JobPageRequest, type JobsPageRequest, type WholeJob } from './query-client.ts';
