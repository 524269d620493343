import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { EMAIL_ADDRESS_PATTERN } from '../../protocol/patterns.ts';
import type { NotifierOptions } from '../../actors/notifier/index.ts';
import { parseWebhookAllow } from '../../actors/notifier/webhook-address.ts';
import { UsageError } from './cli-error.ts';
import { parseCount, parseList } from './option-values.ts';

/** The notifier's flags (`renderbus notifier`, `renderbus up`) as commander hands them over. */
export interface NotifierFlags {
  smtp?: string;
  smtpFrom?: string;
  webhookSecretFile?: string;
  /** Repeatable; each may be a comma list. */
  webhookAllow?: string[];
  notifyAttempts?: string;
}

export type NotifierSettings = Pick<NotifierOptions, 'smtp' | 'webhookSecret' | 'webhookAllow' | 'retry'>;

/** The flags' help texts, shared by `notifier` and `up` so they say the same. */
export const NOTIFIER_FLAG_HELP = {
  smtp: 'SMTP server for email notifications, smtp://[user:pass@]host[:port] or smtps://… (default: $RB_SMTP_URL; none: email notifications fail)',
  smtpFrom: 'sender of the emails (default: $RB_SMTP_FROM, else renderbus@<this host>)',
  webhookSecretFile: 'file holding the secret that signs webhooks (x-renderbus-signature; default: $RB_WEBHOOK_SECRET; none: unsigned)',
  webhookAllow: 'let webhooks reach these addresses, refused by default (loopback, link-local, multicast, this machine\'s own): ADDR[:PORT] or CIDR[:PORT], comma-separated or repeated, e.g. 127.0.0.1:9000 (default: $RB_WEBHOOK_ALLOW)',
  notifyAttempts: 'attempts per notification before it is given up, waiting 1, 2, 4, 8 s… between them (default: 5)',
} as const;

const EMAIL = new RegExp(EMAIL_ADDRESS_PATTERN);

/**
 * The notifier's settings from its flags and the environment (RB_SMTP_URL, RB_SMTP_FROM,
 * RB_WEBHOOK_SECRET, RB_WEBHOOK_ALLOW); a flag wins over its variable. Throws UsageError naming the flag.
 */
export function notifierSettings(flags: NotifierFlags, env: NodeJS.ProcessEnv = process.env): NotifierSettings {
  const out: NotifierSettings = {};
  const smtpUrl = flags.smtp ?? (env.RB_SMTP_URL || undefined);
  const smtpFlag = flags.smtp !== undefined ? '--smtp' : 'RB_SMTP_URL';
  if (smtpUrl !== undefined) {
    let u: URL;
    try {
      u = new URL(smtpUrl);
    } catch {
      throw new UsageError(`${smtpFlag}: '${smtpUrl}' is not a URL (e.g. smtp://mail.studio.example:25, smtps://user:pass@mail.studio.example)`);
    }
    if (u.protocol !== 'smtp:' && u.protocol !== 'smtps:') throw new UsageError(`${smtpFlag}: '${u.protocol}' is not smtp: or smtps: (e.g. smtp://mail.studio.example:25)`);
    const from = flags.smtpFrom ?? (env.RB_SMTP_FROM || `renderbus@${hostname()}`);
    if (!EMAIL.test(from)) throw new UsageError(`${flags.smtpFrom !== undefined ? '--smtp-from' : 'RB_SMTP_FROM'}: '${from}' is not an email address (name@domain)`);
    out.smtp = { url: smtpUrl, from };
  } else if (flags.smtpFrom !== undefined) {
    throw new UsageError('--smtp-from: give the SMTP server as well (--smtp URL or RB_SMTP_URL)');
  }
  if (flags.webhookSecretFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(flags.webhookSecretFile, 'utf8');
    } catch (err) {
      throw new UsageError(`--webhook-secret-file: cannot read ${flags.webhookSecretFile} (${(err as Error).message})`, { cause: err });
    }
    const secret = text.replace(/\r?\n$/, '');
    if (secret.trim() === '') throw new UsageError(`--webhook-secret-file: ${flags.webhookSecretFile} is empty`);
    out.webhookSecret = secret;
  } else if (env.RB_WEBHOOK_SECRET) {
    out.webhookSecret = env.RB_WEBHOOK_SECRET;
  }
  const allowFlag = flags.webhookAllow !== undefined ? '--webhook-allow' : 'RB_WEBHOOK_ALLOW';
  const allowText = flags.webhookAllow ?? (env.RB_WEBHOOK_ALLOW ? [env.RB_WEBHOOK_ALLOW] : []);
  if (allowText.length > 0) {
    const entries = allowText.flatMap((v) => parseList(allowFlag, v));
    try {
      parseWebhookAllow(entries);
    } catch (err) {
      throw new UsageError(`${allowFlag}: ${(err as Error).message}`, { cause: err });
    }
    out.webhookAllow = entries;
  }
  if (flags.notifyAttempts !== undefined) out.retry = { attempts: parseCount('--notify-attempts', flags.notifyAttempts, { min: 1, max: 100 }) };
  return out;
}
