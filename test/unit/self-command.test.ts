import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RENDERBUS_BIN, selfCommand, selfCommandLine } from '../../tools/cli/self-command.ts';

/** Runs `fn` with PATH set to `path`. */
function withPath<T>(path: string, fn: () => T): T {
  const saved = process.env.PATH;
  process.env.PATH = path;
  try {
    return fn();
  } finally {
    process.env.PATH = saved;
  }
}

test('self command - renderbus when PATH has this checkout\'s, else the program\'s full path', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-self-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [linked, other, none] = ['linked', 'other', 'none'].map((d) => join(dir, d)) as [string, string, string];
  for (const d of [linked, other, none]) mkdirSync(d);
  symlinkSync(RENDERBUS_BIN, join(linked, 'renderbus'));
  writeFileSync(join(other, 'renderbus'), '#!/bin/sh\n');
  chmodSync(join(other, 'renderbus'), 0o755);

  assert.equal(withPath(linked, selfCommand), 'renderbus');
  assert.equal(withPath(`${none}:${linked}`, () => selfCommandLine(['--data', '/srv/my farm', 'jobs'])), "renderbus --data '/srv/my farm' jobs");
  assert.equal(withPath(none, selfCommand), RENDERBUS_BIN, 'none on PATH: the full path');
  assert.equal(withPath(`${other}:${linked}`, selfCommand), RENDERBUS_BIN, "another program first on PATH is not this checkout's");
});
