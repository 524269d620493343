import type { PackageInfo } from '../../protocol/index.ts';
import { hostToken, isToken } from '../../protocol/subjects.ts';
import { UsageError } from './cli-error.ts';

/** Parses the value of a counting flag (`--slots 4`), naming the flag when it is wrong. */
export function parseCount(flag: string, value: string, range: { min: number; max: number }): number {
  const text = String(value).trim();
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag}: '${value}' is not a whole number (${range.min}-${range.max})`);
  const n = Number(text);
  if (n < range.min || n > range.max) throw new UsageError(`${flag}: ${n} is out of range (${range.min}-${range.max})`);
  return n;
}

/** `--port`: a TCP port, or -1 for any free one. */
export function parsePort(flag: string, value: string): number {
  if (String(value).trim() === '-1') return -1;
  return parseCount(flag, value, { min: 1, max: 65535 });
}

/** Checks a value that becomes a subject token (site, host, job id). */
export function parseToken(flag: string, value: string): string {
  if (!isToken(value)) {
    throw new UsageError(`${flag}: '${value}' must be lower-case letters, digits, '-' or '_' (at most 64, starting with a letter or digit)`);
  }
  return value;
}

/** `a,b, c` → ['a', 'b', 'c']; empty items are refused. */
export function parseList(flag: string, value: string): string[] {
  const items = String(value).split(',').map((s) => s.trim());
  const empty = items.findIndex((s) => s === '');
  if (empty >= 0) throw new UsageError(`${flag}: '${value}' has an empty item (write 'a,b,c')`);
  return items;
}

/**
 * `--packages 'povray@3.7.0.10,blender@4.1'`: what a render server offers besides what it
 * probes. Each item is `[family/]name@version`.
 */
export function parsePackages(flag: string, value: string): PackageInfo[] {
  return parseList(flag, value).map((item) => {
    const m = /^(?:([^/@\s]+)\/)?([^/@\s]+)@([^/@\s]+)$/.exec(item);
    if (!m) throw new UsageError(`${flag}: '${item}' is not 'name@version' (e.g. 'povray@3.7.0.10', 'blender@4.1')`);
    const pkg: PackageInfo = { name: m[2]!, version: m[3]! };
    if (m[1] !== undefined) pkg.family = m[1];
    return pkg;
  });
}

export { hostToken };

/** Commander collector for repeatable flags (`--require a --require b`). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
