// Progress for long commands (triage, train): a redrawn bar with rate and ETA when stderr is a
// terminal, plain periodic lines otherwise (CI logs, pipes), so neither floods the other.

export interface ProgressOptions {
  /** What is counted, e.g. "requests". */
  unit: string;
  /** Known total (bytes or items) for the bar and ETA; undefined when unknown (stdin). */
  total?: number;
  /** Interval between plain lines when not a terminal. */
  plainEveryMs?: number;
  stream?: NodeJS.WriteStream;
  now?: () => number;
}

export interface ProgressUpdate {
  /** Items done (shown with the unit and rate). */
  done: number;
  /** Position against `total` (bytes read for a file); defaults to `done`. */
  position?: number;
  /** Extra text appended, e.g. "rejects 3". */
  note?: string;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export function formatRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)}M/s`;
  if (perSecond >= 1e4) return `${(perSecond / 1e3).toFixed(1)}k/s`;
  return `${perSecond.toFixed(perSecond >= 100 ? 0 : 1)}/s`;
}

export class Progress {
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private readonly started: number;
  private readonly now: () => number;
  private lastDraw = 0;
  private drewBar = false;

  constructor(private readonly options: ProgressOptions) {
    this.stream = options.stream ?? process.stderr;
    this.tty = Boolean(this.stream.isTTY);
    this.now = options.now ?? (() => performance.now());
    this.started = this.now();
  }

  /** Cheap to call on every item: draws at most 10 times a second (terminal) or every few seconds. */
  update(u: ProgressUpdate): void {
    const t = this.now();
    const every = this.tty ? 100 : (this.options.plainEveryMs ?? 5000);
    if (t - this.lastDraw < every) return;
    this.lastDraw = t;
    this.draw(u, t);
  }

  /** Clears the bar so the summary starts on a clean line. */
  finish(): void {
    if (this.tty && this.drewBar) this.stream.write('\r\x1b[2K');
  }

  line(u: ProgressUpdate): string {
    return this.describe(u, this.now());
  }

  private describe(u: ProgressUpdate, t: number): string {
    const elapsed = (t - this.started) / 1000;
    const rate = elapsed > 0 ? u.done / elapsed : 0;
    const parts = [`${u.done} ${this.options.unit}`, formatRate(rate)];
    const total = this.options.total;
    if (total !== undefined && total > 0) {
      const position = Math.min(u.position ?? u.done, total);
      const fraction = position / total;
      const eta = fraction > 0 ? (elapsed / fraction) * (1 - fraction) : NaN;
      parts.unshift(`${(fraction * 100).toFixed(1).padStart(5)}%`);
      parts.push(`ETA ${formatDuration(eta)}`);
    }
    parts.push(`elapsed ${formatDuration(elapsed)}`);
    if (u.note) parts.push(u.note);
    return parts.join('  ');
  }

  private draw(u: ProgressUpdate, t: number): void {
    const text = this.describe(u, t);
    if (!this.tty) {
      this.stream.write(`${text}\n`);
      return;
    }
    const total = this.options.total;
    let bar = '';
    if (total !== undefined && total > 0) {
      const width = 24;
      const filled = Math.round((Math.min(u.position ?? u.done, total) / total) * width);
      bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] `;
    }
    this.stream.write(`\r\x1b[2K${bar}${text}`);
    this.drewBar = true;
  }
}
