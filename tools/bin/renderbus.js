#!/usr/bin/env node
// The `renderbus` command: loads the TypeScript CLI through tsx, so there is no build step.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 6)) {
  process.stderr.write(`renderbus needs Node.js 20 or later; this is ${process.version}\n`);
  process.exit(1);
}

// Load the big plain-JS dependencies before tsx hooks the loader: through tsx's hooks,
// typebox's hundreds of files take ~0.5 s longer to load, on every command.
await Promise.all([import('@sinclair/typebox'), import('@sinclair/typebox/compiler'), import('msgpackr'), import('commander')]);
const { register } = await import('tsx/esm/api');
register();

// `renderbus tail | head` closes stdout early: that is not an error
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const { run } = await import('../cli/main.ts');
const code = await run(process.argv);
process.exitCode = code;
// a handle left open by a library must not keep a finished command alive
setTimeout(() => process.exit(code), 2_000).unref();
