import { FarmError, lastToken } from '../../protocol/index.ts';

/**
 * The identity a per-caller subject names (`sched.result.<host>`, `sched.submit.<user>`). The
 * server lets a credential publish only its own, so this token, not the message's word, says who
 * sent it; a message that claims someone else is refused.
 */
export function callerOf(subject: string, what: string, claimed?: string): string {
  const caller = lastToken(subject);
  if (claimed !== undefined && claimed !== caller) {
    throw new FarmError('RB_FORBIDDEN', `${what} says ${claimed} but was sent by ${caller}`);
  }
  return caller;
}
