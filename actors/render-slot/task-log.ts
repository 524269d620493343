import { close, createWriteStream, write, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { openToAppend } from '../files/index.ts';
import type { LogSink } from './process.ts';

const STREAM_AFTER_MS = 1_000;
const STREAM_AFTER_CHARS = 64 * 1024;

/**
 * One task's log file. A short task's output is kept in memory and written with one append
 * when it ends (a 2 ms frame must not pay for opening a stream); once a task has run for a
 * second or said more than 64 KiB, the log streams to disk so it can be followed live.
 * Writing never fails the task: a log that cannot be written is dropped and reported once.
 * The file lives in an artist's output folder, so it is never opened through a symbolic link
 * (files/no-follow.ts): a link planted at it, or at its folder, drops the log (RB_UNSAFE_PATH).
 */
export class TaskLog implements LogSink {
  private readonly path: string;
  private readonly root: string;
  private readonly started = performance.now();
  private readonly onError: (err: Error) => void;
  private chunks: string[] = [];
  private size = 0;
  private stream: WriteStream | null = null;
  private opening: Promise<void> | null = null;
  private failed = false;

  /** `root` is the output folder the log sits below (default: the log's own folder). */
  constructor(path: string, onError: (err: Error) => void = () => {}, root = dirname(path)) {
    this.path = path;
    this.root = root;
    this.onError = onError;
  }

  write(text: string): void {
    if (this.failed) return;
    if (this.stream) {
      this.stream.write(text);
      return;
    }
    this.chunks.push(text);
    this.size += text.length;
    if (!this.opening && (this.size > STREAM_AFTER_CHARS || performance.now() - this.started > STREAM_AFTER_MS)) this.opening = this.openStream();
  }

  /**
   * Writes what is left and closes; resolves when it is on disk (or dropped). Never rejects.
   * `discard` drops a log that never reached the disk (nothing worth keeping).
   */
  async close(opts: { discard?: boolean } = {}): Promise<void> {
    if (this.opening) await this.opening;
    if (this.failed) return;
    const stream = this.stream;
    if (!stream && opts.discard) {
      this.chunks = [];
      return;
    }
    if (stream) {
      return new Promise((resolve) => {
        stream.once('error', () => resolve());
        stream.end(() => resolve());
      });
    }
    const text = this.chunks.join('');
    this.chunks = [];
    const fd = await this.open();
    if (fd === null) return;
    const buf = Buffer.from(text);
    await new Promise<void>((resolve) => {
      const rest = (from: number) =>
        write(fd, buf, from, buf.length - from, null, (err, n) => {
          if (!err && from + n < buf.length) return rest(from + n);
          if (err) this.fail(err);
          close(fd, () => resolve());
        });
      rest(0);
    });
  }

  /** The log file, opened without following a link; null (and the log given up) when it cannot be. */
  private async open(): Promise<number | null> {
    try {
      return await openToAppend(this.root, this.path);
    } catch (err) {
      this.fail(err as Error);
      return null;
    }
  }

  private async openStream(): Promise<void> {
    const fd = await this.open();
    if (fd === null) return;
    const stream = createWriteStream('', { fd });
    stream.on('error', (err) => this.fail(err));
    stream.write(this.chunks.join(''));
    this.chunks = [];
    this.stream = stream;
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.chunks = [];
    this.onError(err);
  }
}
