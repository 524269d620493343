/**
 * Splits streamed text into lines ending in '\r' or '\n' (renderers redraw progress with
 * '\r'). Empty lines are dropped. A partial line waits for the next chunk or `end()`.
 */
export class LineSplitter {
  private rest = '';
  private readonly onLine: (line: string) => void;

  constructor(onLine: (line: string) => void) {
    this.onLine = onLine;
  }

  push(text: string): void {
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = start === 0 && this.rest !== '' ? this.rest + text.slice(0, i) : text.slice(start, i);
      if (start === 0) this.rest = '';
      if (line !== '') this.onLine(line);
      start = i + 1;
    }
    if (start === 0) this.rest += text;
    else this.rest = text.slice(start);
    // a renderer that never ends a line must not grow memory without bound
    if (this.rest.length > 64 * 1024) this.rest = this.rest.slice(-16 * 1024);
  }

  end(): void {
    const line = this.rest;
    this.rest = '';
    if (line !== '') this.onLine(line);
  }
}

/** A renderer's two streams, each split into lines (LineSplitter), every line handed on with its stream. */
export class StreamLines {
  private readonly out: LineSplitter;
  private readonly err: LineSplitter;

  constructor(onLine: (line: string, stream: 'stdout' | 'stderr') => void) {
    this.out = new LineSplitter((l) => onLine(l, 'stdout'));
    this.err = new LineSplitter((l) => onLine(l, 'stderr'));
  }

  push(stream: 'stdout' | 'stderr', text: string): void {
    (stream === 'stderr' ? this.err : this.out).push(text);
  }

  end(): void {
    this.out.end();
    this.err.end();
  }
}

/** The last `max` lines seen, for error messages. */
export class LineTail {
  private readonly lines: string[] = [];
  private readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.shift();
  }

  text(maxChars = 2000): string {
    const s = this.lines.join('\n');
    return s.length > maxChars ? `…${s.slice(-maxChars)}` : s;
  }

  get size(): number {
    return this.lines.length;
  }
}
