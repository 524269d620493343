import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { publicRoute, SECURITY_HEADERS, type Route } from '../../actors/monitor/index.ts';

/**
 * The web monitor's pages: index.html, app.js and style.css from ./static, and its libraries
 * (preact, its hooks, htm) straight from node_modules, mapped by the page's import map. No build
 * step: the browser loads ES modules as they are. They hold nothing of the farm, so they are
 * public routes (another machine loads the page, then shows its token to read the farm).
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
    publicRoute(async () => {
      const body = await readFile(fileURLToPath(file));
      const headers: Record<string, string> = { 'cache-control': 'no-cache' };
      if (path === '/') headers['content-security-policy'] = pagePolicy(body.toString('utf8'));
      return { contentType, body, headers };
    }),
  ]));
}

/**
 * The page's content-security-policy: the common one, with the page's inline import map allowed
 * by its hash (browsers do not load an import map from a file). Any other inline script is refused.
 */
export function pagePolicy(html: string): string {
  const hashes = [...html.matchAll(/<script type="importmap">([\s\S]*?)<\/script>/g)].map((m) => `'sha256-${createHash('sha256').update(m[1]!).digest('base64')}'`);
  return SECURITY_HEADERS['content-security-policy']!.replace("default-src 'self';", `default-src 'self'; script-src 'self' ${hashes.join(' ')};`);
}
