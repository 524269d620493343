import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const TRACE = resolve(import.meta.dirname, '../fixtures/build/register.mjs');

/** Runs `renderbus ARGS` from `root` with every loaded module traced; the modules and the output. */
function traced(root: string, args: string[], env: NodeJS.ProcessEnv = {}): { out: string; loaded: string[] } {
  const r = spawnSync(process.execPath, ['--import', TRACE, join(root, 'tools/bin/renderbus.js'), ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, RENDERBUS_FROM_SOURCE: '', ...env },
  });
  assert.equal(r.status, 0, r.stderr);
  const loaded = r.stderr.split('\n').filter((l) => l.startsWith('LOADED ')).map((l) => l.slice('LOADED '.length));
  return { out: r.stdout, loaded };
}

const ranBuild = (loaded: string[]) => loaded.some((u) => u.endsWith('/dist/main.js'));
const ranTsx = (loaded: string[]) => loaded.some((u) => u.includes('/node_modules/tsx/'));

test('build - renderbus runs the compiled dist/ without a TypeScript loader, and the sources when told to', () => {
  const build = spawnSync(process.execPath, [join(ROOT, 'tools/build.mjs')], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(build.status, 0, build.stderr);

  const compiled = traced(ROOT, ['--version']);
  assert.ok(ranBuild(compiled.loaded), `dist/main.js loaded:\n${compiled.loaded.join('\n')}`);
  assert.ok(!ranTsx(compiled.loaded), 'tsx is not loaded');
  assert.ok(!compiled.loaded.some((u) => u.endsWith('.ts')), 'no TypeScript module is loaded');

  const source = traced(ROOT, ['--version'], { RENDERBUS_FROM_SOURCE: '1' });
  assert.ok(ranTsx(source.loaded) && !ranBuild(source.loaded), 'RENDERBUS_FROM_SOURCE=1 runs the sources');
  assert.equal(source.out, compiled.out);
});

test('build - a source newer than the build makes renderbus run the sources, never stale code', (t) => {
  // a copy of the checkout (sources and build), so that touching a source disturbs no other test
  const copy = mkdtempSync(join(tmpdir(), 'rb-build-'));
  t.after(() => rmSync(copy, { recursive: true, force: true }));
  for (const part of ['package.json', 'package-lock.json', 'protocol', 'actors', 'sites', 'tools', 'dist']) {
    cpSync(join(ROOT, part), join(copy, part), { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  }
  symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));

  assert.ok(ranBuild(traced(copy, ['--version']).loaded), 'the copied build is current');
  const later = new Date(Date.now() + 60_000);
  utimesSync(join(copy, 'sites/farm-file.ts'), later, later);
  const stale = traced(copy, ['--version']);
  assert.ok(!ranBuild(stale.loaded) && ranTsx(stale.loaded), `a stale build is not run:\n${stale.loaded.filter((u) => !u.includes('node_modules')).join('\n')}`);
});
