import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { resultEncryption } from '../../sites/outsource/index.ts';
import { run } from '../../tools/cli/main.ts';

test('encrypt results - the job\'s field and the site\'s policy combine to the stricter: no opting out, purge when either asks', () => {
  const cases: [Parameters<typeof resultEncryption>[0], Parameters<typeof resultEncryption>[1], ReturnType<typeof resultEncryption>][] = [
    [undefined, undefined, null],
    [false, undefined, null],
    [undefined, false, null],
    [true, undefined, { purge: true }],
    [{ purge: false }, undefined, { purge: false }],
    [undefined, true, { purge: true }],
    [undefined, { purge: false }, { purge: false }],
    [false, true, { purge: true }], // a job cannot opt out of the site's policy
    [false, { purge: false }, { purge: false }],
    [true, { purge: false }, { purge: true }],
    [{ purge: false }, true, { purge: true }],
    [{ purge: false }, { purge: false }, { purge: false }],
  ];
  for (const [job, site, want] of cases) assert.deepEqual(resultEncryption(job, site), want, `job ${JSON.stringify(job)}, site ${JSON.stringify(site)}`);
});

test('encrypt results - `up --encrypt-results` needs --site and takes purge or keep, refused before anything starts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-enc-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const up = async (...args: string[]) => {
    let err = '';
    const io = { stdout: new Writable({ write: (_c, _e, cb) => cb() }), stderr: new Writable({ write: (c: Buffer, _e, cb) => ((err += c.toString()), cb()) }) };
    return { code: await run(['--data', join(dir, 'data'), ...args], io), err };
  };
  const alone = await up('up', '--encrypt-results');
  assert.equal(alone.code, 2);
  assert.match(alone.err, /--encrypt-results is for a linked site: give --site NAME too/);
  const bad = await up('--site', 'studio', 'up', '--encrypt-results', 'sometimes');
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--encrypt-results: 'sometimes' is not a mode: 'purge' \(the default: the vendor removes its clear copies once the result is sent\) or 'keep'/);
});
