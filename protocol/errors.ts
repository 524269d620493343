/** Every error that crosses a module or wire boundary; the table doubles as documentation. */
export const ErrorCodes = {
  RB_BAD_SUBJECT_TOKEN: 'subject token is invalid',
  RB_DECODE_FAILED: 'payload is not valid MessagePack',
  RB_SCHEMA_MISMATCH: 'payload does not match its schema',
  RB_PROTOCOL_MISMATCH: 'peer speaks another protocol major',
  RB_BAD_FRAMES: 'frame range is invalid',
  RB_BAD_SPEC: 'requirement pattern is invalid',
  RB_BAD_JOB: 'job description is invalid',
  RB_BAD_TEMPLATE: 'job template (Open Job Description) is invalid, or asks what this farm cannot run',
  RB_BUDGET_EXCEEDED: 'the project\'s outsourcing budget is spent',
  RB_UNKNOWN_JOB: 'no such job',
  RB_UNKNOWN_HOST: 'no such host',
  RB_SLOT_BUSY: 'slot already holds a task',
  RB_NO_SUCH_SLOT: 'no such slot',
  RB_SCHEDULER_UNAVAILABLE: 'the scheduler did not answer',
  RB_REGISTRY_UNAVAILABLE: 'the registry did not answer',
  RB_STORE_UNAVAILABLE: "the site's JetStream store did not answer (a NATS cluster electing a leader, or JetStream off)",
  RB_QUOTES_UNAVAILABLE: 'the site\'s quote service (its site services) did not answer',
  RB_TOO_MANY_REQUESTS: 'a peer asked more at once than this site answers (quotes: MAX_QUOTES_IN_FLIGHT per peer); ask again once those are answered',
  RB_FARM_NOT_FOUND: 'no farm found',
  RB_RENDER_FAILED: 'the renderer failed',
  RB_RENDERER_MISSING: 'the rendering package (or a command job\'s program) is not installed on this host',
  RB_SCENE_ERROR: 'the scene itself is broken (a parse error, a missing include): every host fails it the same way',
  RB_INPUT_NOT_FOUND: 'this host cannot see the job\'s scene or input files (a missing mount, a wrong path)',
  RB_JOB_FAILED: 'the job failed: its error budget is spent, or its scene is broken',
  RB_OUTPUT_FAILED: 'could not store the output',
  RB_UNSAFE_PATH: 'a file or folder in an output folder is a symbolic link, or leads outside it',
  RB_OUTPUT_DISK_FULL: 'no space left on the output disk',
  RB_STORAGE_FULL: "the site's data disk is full: nats-server cannot store the farm's records",
  RB_DRAINING: 'the actor is draining and takes no new work',
  RB_TIMEOUT: 'the task ran past its time limit',
  RB_OUT_OF_MEMORY: 'the task used more memory than it was given',
  RB_BAD_ARGUMENT: 'command-line argument is invalid',
  RB_QUEUE_FULL: 'the farm takes no more frames for now: a queue limit (site, user or job) would be passed',
  RB_REMOTE_UNKNOWN: 'the peer answered with an unknown error',
  RB_FORBIDDEN: 'the caller\'s credential does not allow this',
  RB_NOT_AUTHENTICATED: 'the farm refused the connection\'s credentials',
  RB_BAD_CREDENTIALS: 'a credentials file is invalid',
  RB_HOST_REFUSED: 'the HTTP Host is not one the monitor answers to',
  RB_TOKEN_REQUIRED: 'the monitor needs its access token for this',
  RB_BAD_PEER: 'a linked site (peer) is described wrongly: its name (a NATS token: a-z, 0-9, \'-\', \'_\', at most 64), role, address or leaf password',
  RB_BAD_BLOB: 'a blob is invalid: its hash is not 64 lowercase hex, or its bytes do not match its hash or size',
  RB_NO_SUCH_BLOB: 'the content store holds no blob with this hash',
  RB_HANDLER_FAILED: 'the handler of a hot folder failed on this bundle',
  RB_NOT_REGULAR_FILE: 'a hot folder holds something other than a plain file under a bundle name (a symbolic link, a directory, a device)',
  RB_REMOTE_FAILED: 'the linked site a job was sent to refused it, failed it, or sent back too few of its frames',
  RB_BAD_BUNDLE: 'a bundle (tar or manifest) breaks the bundle format, its path rules or its limits',
  RB_BUNDLE_UNSIGNED: 'a bundle from a peer carries no signature (manifest.sig), and the peer\'s bundles must be signed by its site key',
  RB_BAD_SIGNATURE: 'a bundle\'s signature does not verify with its sender\'s site key: its manifest was changed after it was signed, or a key this site does not know signed it',
  RB_WRONG_SIGNER: 'a bundle is signed by another site\'s key than that of the peer whose folder it came through',
  RB_PEER_KEY_UNKNOWN: 'the peer\'s site key is not known yet (it comes with the invitation, or the link\'s first hello): its bundles wait',
  RB_DECRYPT_FAILED: "a returned file does not decrypt with this site's result key (encrypted to another key, changed, or cut short), or decrypts to other content than its manifest names",
  RB_CHAIN_LOOP: 'a chained job came back to a site it already passed through (its path names this site, or a site twice): refused, it would go round',
  RB_CHAIN_REFUSED: 'a job was passed on without its owner\'s consent (chain), or its path is longer than the chain limit',
  RB_QUOTA_EXCEEDED: 'a bundle would take its peer past the bytes this site lets it store (its quota: `renderbus site <peer> --quota`)',
} as const;
export type ErrorCode = keyof typeof ErrorCodes;

/** What an error looks like on the wire, inside a reply envelope. */
export interface WireError {
  code: string;
  message: string;
  retryable: boolean;
}

/** Longest error message sent on the wire (an error may quote a near-1 MiB field of a hostile request). */
export const MAX_WIRE_MESSAGE = 2_000;

export class FarmError extends Error {
  override name = 'FarmError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  constructor(code: ErrorCode, message?: string, opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(message ?? ErrorCodes[code], { cause: opts.cause });
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }
  /** The error as it travels; a message quoting a huge value is cut, so the reply still fits in a message. */
  toWire(): WireError {
    const message = this.message.length > MAX_WIRE_MESSAGE ? `${this.message.slice(0, MAX_WIRE_MESSAGE)}… (${this.message.length - MAX_WIRE_MESSAGE} more characters)` : this.message;
    return { code: this.code, message, retryable: this.retryable };
  }
  static fromWire(e: WireError): FarmError {
    const code = (e.code in ErrorCodes ? e.code : 'RB_REMOTE_UNKNOWN') as ErrorCode;
    return new FarmError(code, e.message, { retryable: e.retryable });
  }
  /** Any thrown value as a FarmError, keeping the original as cause. */
  static from(err: unknown, fallback: ErrorCode = 'RB_REMOTE_UNKNOWN'): FarmError {
    if (err instanceof FarmError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new FarmError(fallback, message, { cause: err });
  }
}
