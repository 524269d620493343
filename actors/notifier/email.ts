import type { Transporter } from 'nodemailer';
import { emailText } from './email-text.ts';
import { DeliveryError, type DeliveryReceipt, type Notification } from './notification.ts';

/** The site's mail server: `smtp://[user:pass@]host[:port]` or `smtps://…`, and the sender. */
export interface SmtpSettings {
  url: string;
  from: string;
}

/** Makes a small JPEG of a frame file, or throws (the email then goes without it). */
export type MakeThumbnail = (path: string) => Promise<Buffer>;

// nodemailer's codes for a connection that failed on the way: worth another attempt
const TRANSIENT = new Set(['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ETLS', 'ECONNREFUSED', 'ECONNRESET', 'EPROTOCOL']);

/** A nodemailer error as a DeliveryError: SMTP 4xx and connection trouble are retried, 5xx and configuration errors not. */
export function smtpFailure(err: unknown): DeliveryError {
  const e = err as { code?: string; responseCode?: number; message?: string };
  const message = `${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`;
  if (typeof e.responseCode === 'number') return new DeliveryError(message, e.responseCode >= 400 && e.responseCode < 500, { cause: err });
  return new DeliveryError(message, e.code !== undefined && TRANSIENT.has(e.code), { cause: err });
}

/**
 * Sends a job's emails through the site's SMTP server (nodemailer, one connection per email):
 * the text of email-text.ts, and for progress a thumbnail of the sample frame, attached.
 */
export class EmailSender {
  private transport: Transporter | null = null;

  constructor(
    private readonly smtp: SmtpSettings,
    private readonly site: string,
    private readonly thumbnail: MakeThumbnail,
    private readonly onThumbnailError: (err: unknown, path: string) => void = () => {},
  ) {}

  async send(note: Notification): Promise<DeliveryReceipt> {
    let attachment: { filename: string; content: Buffer; contentType: string } | null = null;
    if (note.sample) {
      try {
        attachment = { filename: `frame-${note.sample.frame}.jpg`, content: await this.thumbnail(note.sample.output), contentType: 'image/jpeg' };
      } catch (err) {
        this.onThumbnailError(err, note.sample.output); // the email still says where the frame is
      }
    }
    const { subject, text } = emailText(note, this.site, attachment !== null);
    const transport = await this.open();
    try {
      await transport.sendMail({ from: this.smtp.from, to: note.to, subject, text, ...(attachment ? { attachments: [attachment] } : {}) });
    } catch (err) {
      throw smtpFailure(err);
    }
    return note.sample ? { thumbnail: attachment !== null } : {};
  }

  close(): void {
    this.transport?.close();
    this.transport = null;
  }

  private async open(): Promise<Transporter> {
    if (this.transport) return this.transport;
    // loaded on first use: most notifications are webhooks, or none
    const { createTransport } = await import('nodemailer');
    this.transport = createTransport({ url: this.smtp.url, connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 30_000 });
    return this.transport;
  }
}
