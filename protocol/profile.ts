import { FarmError } from './errors.ts';
import type { HostInventory } from './messages/inventory.ts';
import type { Requirements } from './messages/job-spec.ts';

/**
 * Resource profiles with "don't care" values (DESIGN §1.3). A pattern is
 * `[family/]type[@version]`; any part may be `*`, a name part may hold `*` globs
 * (`intel/*xeon*`), and each dotted version part may be `*`. A trailing `*` version part
 * matches whatever follows (`6.*` is any 6.x, `*` any version); otherwise versions match
 * part for part (`6.5` is exactly 6.5). Names compare case-insensitively.
 */
export interface NamePattern {
  family: string | null; // null: the pattern named only the type
  type: string;
  version: string[] | null; // null: any version
  text: string;
}

/** A job's requirements, parsed once: what the registry matches hosts against. */
export interface ResourceProfile {
  machine: NamePattern | null;
  os: NamePattern | null;
  cpu: NamePattern | null;
  cpuCount: number;
  cpuMhz: number;
  ramMb: number;
  swapMb: number;
  packages: NamePattern[];
  licenses: string[];
  /** Render engines a package must offer: `blender:BLENDER_EEVEE` is package `blender`, engine `BLENDER_EEVEE`. */
  engines: EngineNeed[];
}

export interface EngineNeed {
  pkg: string;
  engine: string;
  text: string;
}

const ENGINE = /^([A-Za-z0-9_.+-]+):([A-Za-z0-9_]+)$/;

/** `blender:BLENDER_EEVEE` → the package and the engine it must offer. */
export function parseEngineNeed(field: string, text: string): EngineNeed {
  const m = ENGINE.exec(String(text).trim());
  if (!m) throw new FarmError('RB_BAD_SPEC', `${field}: '${text}' is not 'package:ENGINE' (e.g. 'blender:BLENDER_EEVEE')`);
  return { pkg: m[1]!, engine: m[2]!, text: `${m[1]}:${m[2]}` };
}

const PART = /^[A-Za-z0-9_.+\-*() ]+$/;

export function parsePattern(field: string, text: string, allowVersion = true): NamePattern {
  const src = String(text).trim();
  const at = src.indexOf('@');
  const names = at < 0 ? src : src.slice(0, at);
  const ver = at < 0 ? null : src.slice(at + 1);
  const parts = names.split('/');
  if (parts.length > 2 || parts.some((p) => p.trim() === '' || !PART.test(p))) {
    throw new FarmError('RB_BAD_SPEC', `${field}: '${src}' is not a pattern like 'family/type@version' (e.g. 'linux@6.*', 'x86_64/*', 'povray@3.7.*')`);
  }
  if (ver !== null && !allowVersion) throw new FarmError('RB_BAD_SPEC', `${field}: '${src}' takes no version`);
  let version: string[] | null = null;
  if (ver !== null) {
    const vparts = ver.split('.');
    if (vparts.some((p) => !/^([A-Za-z0-9_+-]+|\*)$/.test(p))) {
      throw new FarmError('RB_BAD_SPEC', `${field}: version '${ver}' in '${src}' must be dotted parts, each a value or '*' (e.g. '3.7.*')`);
    }
    version = vparts.length === 1 && vparts[0] === '*' ? null : vparts;
  }
  return {
    family: parts.length === 2 ? parts[0]!.trim() : null,
    type: parts[parts.length - 1]!.trim(),
    version,
    text: src,
  };
}

export function toProfile(req: Requirements | undefined): ResourceProfile {
  const r = req ?? {};
  return {
    machine: r.machine ? parsePattern('requirements.machine', r.machine, false) : null,
    os: r.os ? parsePattern('requirements.os', r.os) : null,
    cpu: r.cpu ? parsePattern('requirements.cpu', r.cpu, false) : null,
    cpuCount: r.cpuCount ?? 0,
    cpuMhz: r.cpuMhz ?? 0,
    ramMb: r.ramMb ?? 0,
    swapMb: r.swapMb ?? 0,
    packages: (r.packages ?? []).map((p, i) => parsePattern(`requirements.packages[${i}]`, p)),
    licenses: [...(r.licenses ?? [])],
    engines: (r.engines ?? []).map((e, i) => parseEngineNeed(`requirements.engines[${i}]`, e)),
  };
}

// Compiled globs, shared: a match walks every host, so each pattern is compiled once.
const globs = new Map<string, RegExp>();

function globMatch(pattern: string, value: string): boolean {
  if (pattern === '*') return true;
  if (!pattern.includes('*')) return pattern.toLowerCase() === value.toLowerCase();
  let re = globs.get(pattern);
  if (!re) {
    re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 'i');
    if (globs.size > 10_000) globs.clear();
    globs.set(pattern, re);
  }
  return re.test(value);
}

export function versionMatches(pattern: string[] | null, version: string): boolean {
  if (pattern === null) return true;
  const parts = version.split('.');
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p === '*' && i === pattern.length - 1) return true;
    const v = parts[i];
    if (v === undefined) return false;
    if (p !== '*' && p.toLowerCase() !== v.toLowerCase()) return false;
  }
  return parts.length === pattern.length;
}

function nameMatches(p: NamePattern, family: string, type: string, version: string | null): boolean {
  if (p.family !== null && !globMatch(p.family, family)) return false;
  if (!globMatch(p.type, type)) return false;
  if (p.version !== null && (version === null || !versionMatches(p.version, version))) return false;
  return true;
}

/**
 * Checks a host against a profile. Returns the requirements it misses, each as a short
 * sentence ("needs povray@3.8.*, has povray 3.7.0.10"): empty when the host matches.
 */
export function missingOn(profile: ResourceProfile, inv: HostInventory): string[] {
  const miss: string[] = [];
  if (profile.machine && !nameMatches(profile.machine, inv.machine.family, inv.machine.type, null)) {
    miss.push(`needs machine ${profile.machine.text}, is ${inv.machine.family}/${inv.machine.type}`);
  }
  if (profile.os && !nameMatches(profile.os, inv.os.family, inv.os.type, inv.os.version)) {
    miss.push(`needs os ${profile.os.text}, runs ${inv.os.family}/${inv.os.type}@${inv.os.version}`);
  }
  if (profile.cpu && !nameMatches(profile.cpu, inv.cpu.family, inv.cpu.type, null)) {
    miss.push(`needs cpu ${profile.cpu.text}, has ${inv.cpu.family}/${inv.cpu.type}`);
  }
  if (inv.cpu.count < profile.cpuCount) miss.push(`needs ${profile.cpuCount} CPUs, has ${inv.cpu.count}`);
  if (inv.cpu.speedMhz < profile.cpuMhz) miss.push(`needs ${profile.cpuMhz} MHz CPUs, has ${inv.cpu.speedMhz}`);
  if (inv.ramMb < profile.ramMb) miss.push(`needs ${profile.ramMb} MB RAM, has ${inv.ramMb}`);
  if (inv.swapMb < profile.swapMb) miss.push(`needs ${profile.swapMb} MB swap, has ${inv.swapMb}`);
  for (const want of profile.packages) {
    const found = inv.packages.some((p) => nameMatches(want, p.family ?? '', p.name, p.version));
    if (!found) {
      const same = inv.packages.filter((p) => globMatch(want.type, p.name));
      miss.push(same.length === 0
        ? `needs ${want.text}, has no ${want.type}`
        : `needs ${want.text}, has ${same.map((p) => `${p.name} ${p.version}`).join(', ')}`);
    }
  }
  for (const need of profile.engines) {
    // a package that reports no engines was not asked (an older render server, --packages): any will do
    const same = inv.packages.filter((p) => p.name.toLowerCase() === need.pkg.toLowerCase());
    if (same.length === 0) {
      if (!profile.packages.some((want) => globMatch(want.type, need.pkg))) miss.push(`needs ${need.pkg} with engine ${need.engine}, has no ${need.pkg}`);
    } else if (!same.some((p) => p.engines === undefined || p.engines.includes(need.engine))) {
      miss.push(`needs the ${need.pkg} engine ${need.engine}, ${same.map((p) => `${p.name} ${p.version} has ${p.engines!.join(', ') || 'none'}`).join('; ')}`);
    }
  }
  for (const lic of profile.licenses) {
    if (!inv.licenses.some((l) => l.toLowerCase() === lic.toLowerCase())) miss.push(`needs license ${lic}`);
  }
  return miss;
}

export function hostMatches(profile: ResourceProfile, inv: HostInventory): boolean {
  return missingOn(profile, inv).length === 0;
}
