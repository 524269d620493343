import { AUTO_SITE, type LoadBody } from '../../protocol/index.ts';
import type { Job, JobBook } from './job-book.ts';

/*
 * How loaded this site's queue is for a job of a renderer and a priority: what a quote (the
 * vendor's, sites/quotes) and the studio's own estimate (site-choice.ts) start from. Pure.
 */

/**
 * Frames queued or running here at `priority` or more urgent (lower numbers), of jobs that render
 * here: not outsourced ones, not `auto` ones still waiting for their placement, not `except`.
 * Held and paused jobs do not count: they take no slot.
 * The frame time: the mean wall ms per frame of the renderer's frames done in the jobs still in
 * memory, weighted by frames (`timedMs / timedFrames` of each job). A mean over many jobs rather
 * than a median per task: the book keeps each job's totals, not every task's time, and a mean
 * over frames weighs a job as much as it rendered.
 */
export function queueLoad(book: JobBook, renderer: string, priority: number, except?: Job): LoadBody {
  let framesAhead = 0;
  let ms = 0;
  let frames = 0;
  for (const j of book.jobs.values()) {
    if (j.prepared.renderer === renderer && j.timedFrames > 0) {
      ms += j.timedMs;
      frames += j.timedFrames;
    }
    if (j === except || j.remote || book.isFinished(j) || j.held || j.paused) continue;
    if (j.spec.site === AUTO_SITE && j.placement === undefined) continue;
    if (j.prepared.priority > priority) continue;
    framesAhead += j.counts.queued + j.counts.running;
  }
  return { framesAhead, measuredFrames: frames, ...(frames > 0 ? { frameMs: Math.max(1, Math.round(ms / frames)) } : {}) };
}
