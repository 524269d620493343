#!/usr/bin/env node
// The `renderbus` command. It runs the bundled JavaScript in dist/ (node tools/build.mjs, which
// the set-up command runs) when that build is current, and the TypeScript sources through tsx
// otherwise: a checkout edited or pulled since its last build is slow (~0.8 s a command), never
// out of step. RENDERBUS_FROM_SOURCE=1 always runs the sources.
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildIsCurrent } from '../build-state.mjs';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 6)) {
  process.stderr.write(`renderbus needs Node.js 20 or later; this is ${process.version}\n`);
  process.exit(1);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
let main;
if (process.env.RENDERBUS_FROM_SOURCE !== '1' && buildIsCurrent(root)) {
  main = join(root, 'dist/main.js');
} else {
  // Load the big plain-JS dependencies before tsx hooks the loader: through tsx's hooks,
  // typebox's hundreds of files take ~0.5 s longer to load, on every command.
  await Promise.all([import('@sinclair/typebox'), import('@sinclair/typebox/compiler'), import('msgpackr'), import('commander')]);
  const { register } = await import('tsx/esm/api');
  register();
  main = join(root, 'tools/cli/main.ts');
}

// `renderbus tail | head` closes stdout early: that is not an error
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const { run } = await import(pathToFileURL(main).href);
const code = await run(process.argv);
process.exitCode = code;
// a handle left open by a library must not keep a finished command alive
setTimeout(() => process.exit(code), 2_000).unref();
