import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogFormat, logFormatFor, rootLogger } from '../../sites/logger.ts';
import { checkGlobals } from '../../tools/cli/global-options.ts';
import { UsageError } from '../../tools/cli/cli-error.ts';
import { waitUntil } from '../../tools/lib/wait-until.ts';

test('logger - pretty on a terminal, JSON in a pipe, whatever was asked for first', () => {
  assert.equal(logFormatFor(undefined, true), LogFormat.Pretty);
  assert.equal(logFormatFor(undefined, false), LogFormat.Json);
  assert.equal(logFormatFor(LogFormat.Json, true), LogFormat.Json);
  assert.equal(logFormatFor(LogFormat.Pretty, false), LogFormat.Pretty);
});

/** Logs one line to a file in `format` and returns the file's text once it is written. */
async function logged(t: { after(fn: () => void): void }, format?: LogFormat): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'rb-logger-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'farm.log');
  const log = rootLogger({ name: 'renderbus-test', file, level: 'info', ...(format ? { format } : {}) });
  log.child({ actor: 'scheduler' }).warn({ jobId: 'j1' }, 'frame failed');
  log.flush();
  return waitUntil('the line in the log file', () => {
    const text = readFileSync(file, 'utf8');
    return text.endsWith('\n') && text.includes('frame failed') ? text : undefined;
  }, 5_000, 20);
}

test('logger - a log file is JSON unless pretty is asked for', async (t) => {
  const json = await logged(t);
  const line = JSON.parse(json.trim()) as Record<string, unknown>;
  assert.equal(line.msg, 'frame failed');
  assert.equal(line.actor, 'scheduler');
  assert.equal(line.jobId, 'j1');

  const pretty = await logged(t, LogFormat.Pretty);
  assert.throws(() => JSON.parse(pretty.trim()), 'not JSON');
  assert.match(pretty, /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN \(renderbus-test\): frame failed\n/);
  assert.match(pretty, /\n {4}actor: "scheduler"\n {4}jobId: "j1"\n/);
  assert.doesNotMatch(pretty, /\u001b\[/, 'no colours in a file');
});

test('logger - --log-format takes json or pretty and names anything else', () => {
  assert.equal(checkGlobals({ logFormat: 'pretty' }).logFormat, 'pretty');
  assert.throws(() => checkGlobals({ logFormat: 'yaml' }), (err: unknown) => err instanceof UsageError && /--log-format: 'yaml' is not a log format \(json or pretty\)/.test(err.message));
});
