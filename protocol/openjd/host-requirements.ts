import type { Requirements } from '../messages/job-spec.ts';
import type { ParamValue } from './parameters.ts';
import { isObject, shown, unknownFields, type Problems } from './problems.ts';
import { paramScope, resolveField } from './scopes.ts';

const AMOUNTS: Record<string, keyof Requirements> = { 'amount.worker.vcpu': 'cpuCount', 'amount.worker.memory': 'ramMb' };
/** OpenJD's os.family values as the render server's probe names the OS type (protocol/profile.ts patterns). */
const OS: Record<string, string> = { linux: 'linux', macos: 'darwin', windows: 'windows/*' };
/** OpenJD's cpu.arch values as the probe names the machine family. */
const ARCH: Record<string, string> = { x86_64: 'x86_64/*', arm64: 'aarch64/*' };

/** hostRequirements → requirements: CPU count and memory minimums, one OS family, one CPU architecture; anything else is refused. */
export function hostRequirements(h: unknown, path: string, params: Map<string, ParamValue>, problems: Problems): Requirements | undefined {
  if (h === undefined) return undefined;
  if (!isObject(h) || (h.amounts === undefined && h.attributes === undefined)) {
    problems.add(path, 'must have amounts or attributes');
    return undefined;
  }
  unknownFields(h, ['amounts', 'attributes'], path, problems);
  const req: Requirements = {};
  if (h.amounts !== undefined) {
    if (!Array.isArray(h.amounts) || h.amounts.length === 0) problems.add(`${path}.amounts`, 'must be a non-empty list');
    else h.amounts.forEach((a, i) => {
      const p = `${path}.amounts[${i}]`;
      if (!isObject(a)) return problems.add(p, 'must be { name, min, max }');
      unknownFields(a, ['name', 'min', 'max'], p, problems);
      const key = typeof a.name === 'string' ? AMOUNTS[a.name.toLowerCase()] : undefined;
      if (!key) return problems.add(`${p}.name`, `${shown(a.name)} is not an amount this farm can require (${Object.keys(AMOUNTS).join(', ')})`);
      if (a.max !== undefined) problems.add(`${p}.max`, 'renderbus requirements are minimums only: a host with more is not kept from the task (remove max)');
      if (a.min === undefined) return a.max === undefined ? problems.add(p, 'needs min') : undefined;
      if (typeof a.min !== 'number' || !(a.min >= 0)) return problems.add(`${p}.min`, `${shown(a.min)} is not a number 0 or more`);
      (req as Record<string, number>)[key] = Math.ceil(a.min);
    });
  }
  if (h.attributes !== undefined) {
    if (!Array.isArray(h.attributes) || h.attributes.length === 0) problems.add(`${path}.attributes`, 'must be a non-empty list');
    else h.attributes.forEach((a, i) => {
      const p = `${path}.attributes[${i}]`;
      if (!isObject(a)) return problems.add(p, 'must be { name, anyOf | allOf }');
      unknownFields(a, ['name', 'anyOf', 'allOf'], p, problems);
      const attr = typeof a.name === 'string' ? a.name.toLowerCase() : '';
      const table = attr === 'attr.worker.os.family' ? OS : attr === 'attr.worker.cpu.arch' ? ARCH : undefined;
      if (!table) return problems.add(`${p}.name`, `${shown(a.name)} is not an attribute this farm can require (attr.worker.os.family, attr.worker.cpu.arch)`);
      const key = a.anyOf !== undefined ? 'anyOf' : 'allOf';
      const values = a[key];
      if ((a.anyOf === undefined) === (a.allOf === undefined)) return problems.add(p, 'needs one of anyOf or allOf');
      if (!Array.isArray(values) || values.length !== 1) return problems.add(`${p}.${key}`, `renderbus matches one ${attr === 'attr.worker.os.family' ? 'OS family' : 'CPU architecture'} per requirement: give exactly one value`);
      const v = resolveField(values[0], `${p}.${key}[0]`, paramScope(params, false), problems)?.toLowerCase();
      if (v === undefined) return;
      const pattern = table[v];
      if (!pattern) return problems.add(`${p}.${key}[0]`, `'${v}' is not one of ${Object.keys(table).join(', ')}`);
      if (attr === 'attr.worker.os.family') req.os = pattern;
      else req.machine = pattern;
    });
  }
  return Object.keys(req).length > 0 ? req : undefined;
}
