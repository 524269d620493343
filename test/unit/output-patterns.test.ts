import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { backtrackingRisk, codecs, compileOutputPatterns, FarmError, PROTOCOL_MAJOR, matchesAny, PATTERN_LIMITS, prepareJob, readProgress, type FrameRecord, type JobDetail, type JobSpec } from '../../protocol/index.ts';
import { JobBook } from '../../actors/scheduler/index.ts';
import { aJobSpec } from '../helpers/builders.ts';
import { UsageError } from '../../tools/cli/cli-error.ts';
import { describeFrame } from '../../tools/cli/frame.ts';
import { buildJob } from '../../tools/cli/job-file.ts';

const refused = (fn: () => unknown, message: RegExp) =>
  assert.throws(fn, (err: unknown) => err instanceof FarmError && err.code === 'RB_BAD_JOB' && message.test(err.message));

test('output patterns - a progress regex gives percent, done of total, and the frame it names', () => {
  const kick = compileOutputPatterns({ progress: String.raw`\|\s+(?<percent>\d+)% done` }).progress!;
  assert.deepEqual(readProgress(kick, '00:00:02   380MB         |    45% done - 12 rays/pixel'), { percent: 45 });
  assert.equal(readProgress(kick, '00:00:00   380MB         | [ass] loading scene.ass'), undefined);
  const tiles = compileOutputPatterns({ progress: String.raw`frame (?<frame>\d+): tile (?<done>\d+)/(?<total>\d+)` }).progress!;
  assert.deepEqual(readProgress(tiles, 'frame 7: tile 3/12'), { frame: 7, percent: 25 });
  assert.equal(readProgress(tiles, 'frame 7: tile 3/0'), undefined, 'a total of 0 is no progress');
  const nuke = compileOutputPatterns({ progress: String.raw`^Frame (?<frame>\d+) \(\d+ of \d+\)` }).progress!;
  assert.deepEqual(readProgress(nuke, 'Frame 12 (3 of 10)'), { frame: 12, percent: 0 }, 'a frame alone: it starts');
  const maya = compileOutputPatterns({ progress: String.raw`Initializing at frame (?<frame>\d+)|\|\s+(?<percent>\d+)% done` }).progress!;
  assert.deepEqual(readProgress(maya, '00:00:00   773MB         | [mtoa.session]     Initializing at frame 2.000000'), { frame: 2, percent: 0 });
  assert.deepEqual(readProgress(maya, '00:00:03   801MB         |    40% done - 5 rays/pixel'), { percent: 40 });
  const over = compileOutputPatterns({ progress: String.raw`(?<percent>\d+)%` }).progress!;
  assert.deepEqual(readProgress(over, '250%'), { percent: 100 });
});

test('output patterns - a bad regex is refused naming its field and what the regex engine said', () => {
  refused(() => compileOutputPatterns({ progress: '(?<percent>\\d+' }), /^progress: Invalid regular expression: .*Unterminated group/);
  refused(() => compileOutputPatterns({ errors: ['ERROR', '[unclosed'] }), /^errors\[1\]: Invalid regular expression/);
  refused(() => compileOutputPatterns({ sceneErrors: ['x'.repeat(PATTERN_LIMITS.chars + 1)] }), /^sceneErrors\[0\]: the regex is 201 characters, at most 200/);
  refused(() => compileOutputPatterns({ progress: String.raw`(?<pct>\d+)%` }), /^progress: .*\(\?<pct>…\); known: percent, done, total, frame/);
  refused(() => compileOutputPatterns({ progress: String.raw`(?<done>\d+) samples` }), /needs both \(\?<done>…\) and \(\?<total>…\)/);
  refused(() => compileOutputPatterns({ progress: String.raw`\d+% done` }), /names no progress/);
  refused(() => compileOutputPatterns({ errors: Array.from({ length: 9 }, () => 'E') }), /^errors: 9 regexes, at most 8/);
});

test('output patterns - regexes that can backtrack without bound are refused, ordinary ones pass', () => {
  for (const risky of ['(a+)+$', '(?:.*x)*y', '(a|aa)*b', String.raw`(\w+\s?)+$`, String.raw`(a)\1`, String.raw`(?<x>a)\k<x>`, '.*.*.*.*x', '(.*){2,1000}x', '(a|b){1,30}c', '(?:x(a|b))+y']) {
    assert.notEqual(backtrackingRisk(risky), undefined, risky);
    refused(() => compileOutputPatterns({ errors: [risky] }), /^errors\[0\]: \/.*\/: /);
  }
  for (const fine of [String.raw`\|\s+(?<percent>\d+)% done`, String.raw`^R90000\s+(?<percent>\d+)%`, String.raw`(?:ERROR|FATAL) \|`, String.raw`[(|]+x`, String.raw`(ab){2,3}`, String.raw`(\d+)?x`, String.raw`\{(?:ERROR|SEVERE)\}`, String.raw`(\d+\.)?\d+`, String.raw`\(a+\)+`]) {
    assert.equal(backtrackingRisk(fine), undefined, fine);
  }
});

test('output patterns - lines are tested on their head only, so a huge line costs no more than a short one', () => {
  const [re] = compileOutputPatterns({ errors: ['ERROR'] }).errors;
  assert.equal(matchesAny([re!], `${'x'.repeat(PATTERN_LIMITS.lineChars)}ERROR`), false);
  assert.equal(matchesAny([re!], 'ERROR: the scene'), true);
});

test('output patterns - a job gives them with renderer command only, checked at submit', () => {
  const job = (o: Partial<JobSpec>): JobSpec => ({ scene: '/s/a.pov', frames: '1', output: { dir: '/out' }, ...o });
  refused(() => prepareJob(job({ progress: String.raw`(?<percent>\d+)%` })), /^progress: output patterns only go with renderer 'command', not 'povray'/);
  refused(() => prepareJob(job({ command: 'kick -i {scene}', sceneErrors: ['(x+)*'] })), /^sceneErrors\[0\]: .*backtrack/);
  assert.equal(prepareJob(job({ command: 'kick -i {scene}', progress: String.raw`(?<percent>\d+)% done`, errors: ['ERROR'] })).renderer, 'command');
});

test('output patterns - a job file\'s bad regexes are each named by their place in the file', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-patterns-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'shot.ass'), 'ass');
  const job = { scene: 'shot.ass', frames: '1', command: 'kick -i {scene} -o {output}', progress: '(?<percent>\\d+', errors: ['ERROR', '(a+)+$'] };
  writeFileSync(join(dir, 'job.json'), JSON.stringify(job));
  const input = { args: ['job.json'], flags: {}, cwd: dir, defaults: { user: 'alice', group: 'artists', outputRoot: '/srv/out' }, jobId: 'jtest0001' };
  assert.throws(() => buildJob(input), (err: unknown) => {
    assert.ok(err instanceof UsageError);
    assert.match(err.message, /the job has 2 problems/);
    assert.match(err.message, /progress: Invalid regular expression: .*Unterminated group/);
    assert.match(err.message, /errors\/1: \/\(a\+\)\+\$\/: a repeated group/);
    return true;
  });
  writeFileSync(join(dir, 'job.json'), JSON.stringify({ ...job, progress: '(?<percent>\\d+)%', errors: ['ERROR'] }));
  assert.equal(buildJob(input).spec.progress, '(?<percent>\\d+)%');
});

test('output patterns - a leased task carries the job\'s patterns to the render server', () => {
  const spec = aJobSpec({ scene: '/s/shot.ass', command: 'kick -i {scene} -o {output}', progress: String.raw`(?<percent>\d+)% done`, errors: ['ERROR'], sceneErrors: [String.raw`\[ass\]`] });
  const book = new JobBook();
  const job = book.add('k', spec, prepareJob(spec), 1000);
  const a = book.lease(job, 'h1', 0, 2000)!;
  assert.deepEqual([a.progress, a.errors, a.sceneErrors], [spec.progress, spec.errors, spec.sceneErrors]);
  const wire = codecs.assignRequest.decode(codecs.assignRequest.encode({ v: PROTOCOL_MAJOR, host: 'h1', assignments: [a] }));
  assert.equal(wire.assignments[0]!.progress, spec.progress);
});

test('output patterns - renderbus frame shows a running frame\'s last percentage', () => {
  const f = { frame: 3, state: 'running', taskIndex: 0, attempt: 1, host: 'box', slot: 0 } as FrameRecord;
  const job = { jobId: 'j1', name: 'sh010', outputDir: '/out' } as JobDetail;
  assert.match(describeFrame(job, f, null, null, null, undefined, 45.4), /^progress +45% \(as its renderer last said\)$/m);
  assert.doesNotMatch(describeFrame(job, f, null, null, null), /^progress/m);
});
