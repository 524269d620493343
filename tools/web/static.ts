import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Route } from '../../actors/monitor/index.ts';

/**
 * The web monitor's pages: index.html, app.js and style.css from ./static, and its libraries
 * (preact, its hooks, htm) straight from node_modules, mapped by the page's import map. No build
 * step: the browser loads ES modules as they are.
 */
const PAGES: [string, URL, string][] = [
  ['/', new URL('./static/index.html', import.meta.url), 'text/html; charset=utf-8'],
  ['/app.js', new URL('./static/app.js', import.meta.url), 'text/javascript; charset=utf-8'],
  ['/style.css', new URL('./static/style.css', import.meta.url), 'text/css; charset=utf-8'],
  ['/vendor/preact.mjs', new URL(import.meta.resolve('preact')), 'text/javascript; charset=utf-8'],
  ['/vendor/preact-hooks.mjs', new URL(import.meta.resolve('preact/hooks')), 'text/javascript; charset=utf-8'],
  ['/vendor/htm.mjs', new URL(import.meta.resolve('htm')), 'text/javascript; charset=utf-8'],
];

export function staticRoutes(): Map<string, Route> {
  return new Map(PAGES.map(([path, file, contentType]): [string, Route] => [
    path,
    // read on each request: a few KB, and an upgraded install serves its new pages at once
    async () => ({ contentType, body: await readFile(fileURLToPath(file)), headers: { 'cache-control': 'no-cache' } }),
  ]));
}
