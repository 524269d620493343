// Builds the program that `renderbus` runs: tools/cli/main.ts and everything it imports, bundled
// by esbuild into dist/ (a few chunks, split at the CLI's lazy imports), so that no TypeScript
// loader runs in production and a process opens a few dozen files at start, not a thousand.
//   node tools/build.mjs           build when a source is newer than the last build
//   node tools/build.mjs --force   build anyway
// tools/bin/renderbus.js runs dist/ when it is current and the sources through tsx otherwise, so
// a stale build is slow, never wrong. Tests and benchmarks import the sources through tsx; type
// checking is tsc's (`npm run lint`), esbuild only strips the types.
//
// Measured (2 cores, Node 20.20; docs/benchmarks.md, "CLI start"): `renderbus --version` 0.50 s
// median through tsx, 0.19 s as tsc's output (one file per module), 0.17 s bundled (Node alone:
// 0.08 s); typebox alone is 833 module files, ~110 ms to load unbundled and ~15 ms bundled.
// docs/architecture.md, "The build".
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildIsCurrent, STAMP } from './build-state.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'dist');
/**
 * Dependencies bundled in, because they are many files: the rest stay in node_modules, loaded by
 * Node as they are (native modules, packages that find files of their own, CommonJS).
 */
const BUNDLED = new Set(['@sinclair/typebox']);

/**
 * Each module keeps its own place: `import.meta.url` and `import.meta.dirname` in a chunk (which
 * lives in dist/) are rewritten to the module's folder in the checkout, so that files found
 * beside a module (launcher.pl, the web monitor's static files, the demo scene, package.json)
 * are found the same way built and from source.
 */
const keepPlaces = {
  name: 'keep-module-places',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      if (!source.includes('import.meta.')) return undefined;
      // every chunk is in dist/ itself: the module's folder is the same way from any of them
      const dirUrl = `new URL(${JSON.stringify(`${relative(OUT, dirname(args.path))}/`)}, import.meta.url)`;
      const contents = source.replace(/\bimport\.meta\.(dirname|url)\b/g, (_, which) =>
        which === 'dirname'
          ? `decodeURIComponent(${dirUrl}.pathname.slice(0, -1))`
          : `new URL(${JSON.stringify(basename(args.path))}, ${dirUrl}).href`,
      );
      return { contents, loader: 'ts' };
    });
  },
};

async function build() {
  const { build: esbuild } = await import('esbuild');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const external = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies })
    .filter((name) => !BUNDLED.has(name))
    .flatMap((name) => [name, `${name}/*`]);
  const result = await esbuild({
    absWorkingDir: ROOT,
    entryPoints: { main: 'tools/cli/main.ts' },
    outdir: OUT,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external,
    plugins: [keepPlaces],
    logLevel: 'warning',
    // names in stack traces and logs stay the sources' (the xstate machines' names, errors)
    keepNames: true,
    sourcemap: 'linked',
    metafile: true,
  });
  writeFileSync(join(ROOT, STAMP), `${new Date().toISOString()}\n`);
  pruneOldChunks(new Set(Object.keys(result.metafile.outputs).map((p) => join(ROOT, p))));
}

/**
 * Chunk names carry content hashes, so each build leaves the last one's chunks behind. They go
 * once a day old: a farm started before a rebuild still loads its commands' chunks lazily.
 */
function pruneOldChunks(current) {
  const dayAgo = Date.now() - 24 * 3600 * 1000;
  for (const name of readdirSync(OUT)) {
    const path = join(OUT, name);
    if (current.has(path) || !/\.js(\.map)?$/.test(name)) continue;
    if (statSync(path).mtimeMs < dayAgo) rmSync(path, { force: true });
  }
}

const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== '--force');
if (unknown.length > 0) {
  process.stderr.write(`build: unknown argument '${unknown[0]}' (expected --force)\n`);
  process.exit(2);
}
if (args.includes('--force') || !buildIsCurrent(ROOT)) {
  process.stderr.write('build: bundling into dist/\n');
  await build();
}
