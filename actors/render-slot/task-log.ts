import { appendFile, createWriteStream, type WriteStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { LogSink } from './process.ts';

const STREAM_AFTER_MS = 1_000;
const STREAM_AFTER_CHARS = 64 * 1024;

/**
 * One task's log file. A short task's output is kept in memory and written with one append
 * when it ends (a 2 ms frame must not pay for opening a stream); once a task has run for a
 * second or said more than 64 KiB, the log streams to disk so it can be followed live.
 * Writing never fails the task: a log that cannot be written is dropped and reported once.
 */
export class TaskLog implements LogSink {
  private readonly path: string;
  private readonly started = performance.now();
  private readonly onError: (err: Error) => void;
  private chunks: string[] = [];
  private size = 0;
  private stream: WriteStream | null = null;
  private failed = false;

  constructor(path: string, onError: (err: Error) => void = () => {}) {
    this.path = path;
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
    if (this.size > STREAM_AFTER_CHARS || performance.now() - this.started > STREAM_AFTER_MS) this.openStream();
  }

  /**
   * Writes what is left and closes; resolves when it is on disk (or dropped). Never rejects.
   * `discard` drops a log that never reached the disk (nothing worth keeping).
   */
  close(opts: { discard?: boolean } = {}): Promise<void> {
    if (this.failed) return Promise.resolve();
    const stream = this.stream;
    if (!stream && opts.discard) {
      this.chunks = [];
      return Promise.resolve();
    }
    if (stream) {
      return new Promise((resolve) => {
        stream.once('error', () => resolve());
        stream.end(() => resolve());
      });
    }
    const text = this.chunks.join('');
    this.chunks = [];
    // the callback API: no FileHandle per task, which counts at hundreds of tasks a second
    return new Promise((resolve) => {
      appendFile(this.path, text, (err) => {
        if (err) this.fail(err);
        resolve();
      });
    });
  }

  private openStream(): void {
    const stream = createWriteStream(this.path, { flags: 'a' });
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
