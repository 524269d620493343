import { createHmac, timingSafeEqual } from 'node:crypto';

/** The header that signs a webhook's body: `sha256=<hex HMAC-SHA256 of the raw body>`. */
export const SIGNATURE_HEADER = 'x-renderbus-signature';

/** The signature header's value for these exact body bytes. */
export function signBody(secret: string, body: string | Uint8Array): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * Whether `header` signs `body` with `secret` (constant-time compare). What a receiver does
 * (docs/notifications.md shows the same in a few lines).
 */
export function verifySignature(secret: string, body: string | Uint8Array, header: string | undefined): boolean {
  if (typeof header !== 'string') return false;
  const expected = Buffer.from(signBody(secret, body));
  const given = Buffer.from(header);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
