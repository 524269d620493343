import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../tools/cli/cli-error.ts';
import { frameLogPath, liveText, parseFrameRef, parseSlotRef } from '../../tools/cli/frame.ts';
import { describeSlot } from '../../tools/cli/slot.ts';

test('frame-format - parses <job>:<n> and refuses anything else, naming it', () => {
  assert.deepEqual(parseFrameRef('j1a2:12'), { jobId: 'j1a2', frame: 12 });
  for (const bad of ['abc', 'abc:', ':3', 'abc:x', 'ABC:1', 'a:1:2', 'a:-1']) {
    assert.throws(() => parseFrameRef(bad), (e: unknown) => e instanceof UsageError && e.message.includes(`'${bad}'`), bad);
  }
});

test('frame-format - parses <host>/<n> and refuses anything else, naming it', () => {
  assert.deepEqual(parseSlotRef('box/0'), { host: 'box', slot: 0 });
  for (const bad of ['box', 'box/x', '/0', 'box/', 'Box/1', 'a/b/1']) {
    assert.throws(() => parseSlotRef(bad), (e: unknown) => e instanceof UsageError && e.message.includes(`'${bad}'`), bad);
  }
});

test('frame-format - the log path is the slot\'s, none before the first attempt', () => {
  const job = { jobId: 'j1', outputDir: '/r/out' };
  assert.equal(frameLogPath(job, { taskIndex: 3, attempt: 2 }), '/r/out/.rb-logs/j1.3-a2.log');
  assert.equal(frameLogPath(job, { taskIndex: 3, attempt: 0 }), null);
});

test('frame-format - live figures and a slot read as one line each', () => {
  const live = { wallMs: 4_000, cpuMs: 1_500, cpuPercent: 98.6, rssKb: 2048, peakRssKb: 4096, readBytes: 1536, writtenBytes: 10 };
  const text = liveText(live);
  assert.match(text, /cpu 99%/);
  assert.match(text, /memory 2\.0 MiB \(peak 4\.0 MiB\)/);
  assert.match(text, /read 1\.5 KiB, written 10 B/);
  assert.doesNotMatch(liveText({ ...live, readBytes: undefined, writtenBytes: undefined }), /read/);
  const slot = describeSlot('box', { index: 0, state: 'busy', taskId: 'j1.0', jobId: 'j1', frames: [1, 2], since: 0 }, live, 60_000);
  assert.match(slot, /slot\s+box\/0/);
  assert.match(slot, /frames\s+1,2/);
  assert.match(slot, /process\s+cpu 99%/);
  assert.match(describeSlot('box', { index: 1, state: 'idle' }, null), /state\s+idle/);
});
