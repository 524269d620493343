import { homedir } from 'node:os';
import { RESERVED_ENV } from '../../protocol/index.ts';

/**
 * The only variables a renderer takes from the render server's environment. Nothing else
 * crosses: the farm runs with secrets in its environment (RB_WEBHOOK_SECRET, the SMTP password
 * in RB_SMTP_URL, credentials), and a job's log is readable by its artist and the monitor.
 * TMPDIR is where a host keeps scratch space; POV-Ray needs nothing beyond these.
 */
export const PASSED_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR'] as const;

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

/**
 * A renderer's whole environment: PASSED_ENV from the farm's (PATH and HOME always), then the
 * job's own variables (`env` of the job). Names the farm keeps (PATH, LD_*...) were refused at submit, and are
 * skipped here too..
 */
export function rendererEnv(jobEnv: Readonly<Record<string, string>> | undefined, farm: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of PASSED_ENV) {
    const v = farm[name];
    if (v !== undefined && v !== '') env[name] = v;
  }
  env.PATH ??= DEFAULT_PATH;
  env.HOME ??= homedir();
  for (const [name, value] of Object.entries(jobEnv ?? {})) if (!RESERVED_ENV.test(name)) env[name] = value;
  return env;
}
