import { access } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ANY_HOST, ROLES, checkPrincipal, isRole, isToken, parseServerList, type Principal } from '../../protocol/index.ts';
import { applySiteAuth, issuePrincipal, listPrincipals, revokePrincipal, writeCredentials } from '../../sites/auth/index.ts';
import { DEFAULT_SITE, readFarmFile } from '../../sites/farm-file.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { json } from './format.ts';
import { dataDirOf } from './global-options.ts';

export interface CredentialsOptions {
  out?: string;
  url?: string;
  anyHost?: boolean;
  force?: boolean;
  json?: boolean;
}

/**
 * `renderbus credentials add|list|revoke`: who may use the farm's bus. It works on the data
 * directory of the farm (`--data`, on the machine that runs `renderbus up`): the store of public
 * keys there, and the nats-server of that farm, which re-reads it at once when it runs.
 */
export async function credentialsCommand(c: CommandContext<CredentialsOptions>): Promise<number> {
  const [verb, role, name] = c.args;
  const dataDir = dataDirOf(c.globals);
  const farm = await readFarmFile(dataDir);
  const site = c.globals.site ?? farm?.site ?? DEFAULT_SITE;
  if (verb === 'list') {
    const list = (await listPrincipals(dataDir)).map((p) => ({ role: p.role, name: p.name, issuedAt: new Date(p.issuedAt).toISOString(), local: p.local === true }));
    if (c.opts.json) c.io.stdout.write(json(list));
    else for (const p of list) c.io.stdout.write(`${p.role.padEnd(14)} ${p.name.padEnd(24)} issued ${p.issuedAt}${p.local ? '  (renderbus up\'s own)' : ''}\n`);
    return ExitCode.Ok;
  }
  if (verb !== 'add' && verb !== 'revoke') throw new UsageError(`give add, list or revoke (got '${verb ?? ''}')`);
  const principal = principalOf(role, name, c.opts.anyHost === true);
  if (verb === 'revoke') {
    const n = await revokePrincipal(dataDir, site, principal.role, principal.name);
    if (n === 0) throw new UsageError(`no credential of ${principal.role} '${principal.name}' in ${dataDir} (renderbus credentials list)`);
    const told = await applySiteAuth(dataDir);
    c.io.stderr.write(`revoked ${n} credential(s) of ${principal.role} '${principal.name}'${told ? '; the farm\'s NATS server cut off their connections' : ' (the farm is not running: it starts without them)'}\n`);
    return ExitCode.Ok;
  }
  const out = resolve(c.opts.out ?? `${principal.role}-${principal.name === ANY_HOST ? 'any-host' : principal.name}.creds`);
  if (!c.opts.force && (await access(out).then(() => true, () => false))) throw new UsageError(`${out} exists: give --out another file, or --force`);
  if (c.opts.url !== undefined) parseServerList(c.opts.url, '--url'); // a bad one named now, not when the holder connects
  const url = c.opts.url ?? (farm?.servers ? farm.servers.join(',') : farm?.url); // every member of a cluster
  const creds = await issuePrincipal(dataDir, site, principal, url ? { url } : {});
  await writeCredentials(out, creds);
  const told = await applySiteAuth(dataDir);
  if (c.opts.json) c.io.stdout.write(json({ role: creds.role, name: creds.name, site, url: url ?? null, file: out, applied: told }));
  else {
    c.io.stdout.write(`${out}\n`);
    c.io.stderr.write(`issued ${/^[aeiou]/.test(principal.role) ? 'an' : 'a'} ${principal.role} credential for '${principal.name}' on site ${site} (${url ?? 'no URL: give --nats'}): ${out}, mode 0600. Keep it secret; hand it over by a safe channel.${told ? '' : ' The farm is not running: it takes effect at its next start.'}\n`);
  }
  return ExitCode.Ok;
}

function principalOf(role: string | undefined, name: string | undefined, anyHost: boolean): Principal {
  if (!isRole(role)) throw new UsageError(`give a role: ${ROLES.join(', ')} (got '${role ?? ''}')`);
  if (anyHost) {
    if (role !== 'render-server') throw new UsageError('--any-host is for a render-server credential');
    return { role, name: ANY_HOST };
  }
  if (name === undefined || !isToken(name)) throw new UsageError(`give the ${role === 'render-server' ? 'host' : role === 'artist' || role === 'operator' ? 'user' : 'service'} name: lower-case letters, digits, '-' or '_' (got '${name ?? ''}')`);
  return checkPrincipal({ role, name });
}
