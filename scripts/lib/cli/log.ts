/**
 * Human output. Everything for people goes to stderr, one line at a time, so stdout stays free
 * for the one machine-readable `--json` result. Every line passes through `redact`: a secret
 * registered with `addSecret` can never be printed, whatever message carries it, and through
 * `printable` (escape.ts): a control character from a server can never move the cursor.
 */
import { printable } from "./escape.ts";

const secrets = new Set<string>();
let debugEnabled = false;

/** Registers a value (a token, a key) that must never appear in any output. */
export function addSecret(value: string): void {
  // Very short values would mask ordinary words; real tokens are long.
  if (value.length >= 6) secrets.add(value);
}

export function redact(text: string): string {
  let out = text;
  for (const secret of secrets) out = out.replaceAll(secret, "[redacted]");
  return out;
}

export function setDebug(on: boolean): void {
  debugEnabled = on;
}

export function isDebug(): boolean {
  return debugEnabled;
}

/** A progress line drawn in place on the terminal and not yet ended with a newline. */
let barOpen = false;

/** One line for the operator, on stderr; an open progress line is ended first, never glued to. */
export function say(line: string): void {
  const end = barOpen ? "\n" : "";
  barOpen = false;
  process.stderr.write(`${end}${printable(redact(line))}\n`);
}

/** Detail only shown with --debug. */
export function debug(line: string): void {
  if (debugEnabled) say(`debug: ${line}`);
}

/** "1.4 GiB" style sizes for progress and summaries. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

const QUIET_BELOW = 32 * 1024 * 1024;

export interface Progress {
  /** Total bytes done so far. */
  update(done: number): void;
  finish(): void;
}

/**
 * Progress of one long byte-moving step (an upload, a download, a copy). On a terminal: one
 * line redrawn in place. Elsewhere (CI logs): a plain line at every 10 %, so a log shows the
 * step is alive without drowning in updates.
 */
export function progress(label: string, total: number): Progress {
  // Small files are done before anyone waits for them: no progress lines at all.
  if (total < QUIET_BELOW) return { update() {}, finish() {} };
  const tty = process.stderr.isTTY === true;
  const started = performance.now();
  let lastTenth = -1;
  let lastDraw = Number.NEGATIVE_INFINITY; // the first update draws at once
  const line = (done: number) => {
    const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
    const secs = (performance.now() - started) / 1000;
    const rate = secs > 0 ? `${formatBytes(done / secs)}/s` : "";
    return `${label}: ${pct}% of ${formatBytes(total)} ${rate}`.trimEnd();
  };
  let finished = false;
  const bar: Progress = {
    update(done) {
      if (finished) return;
      // The last byte ends the line: callers need not remember finish().
      if (done >= total) return bar.finish();
      if (tty) {
        const now = performance.now();
        if (now - lastDraw < 100) return;
        lastDraw = now;
        process.stderr.write(`\r\x1b[2K${printable(redact(line(done)))}`);
        barOpen = true;
        return;
      }
      const tenth = total > 0 ? Math.floor((done / total) * 10) : 10;
      if (tenth > lastTenth) {
        lastTenth = tenth;
        say(line(done));
      }
    },
    finish() {
      if (finished) return;
      finished = true;
      if (tty) {
        process.stderr.write(`\r\x1b[2K${printable(redact(line(total)))}\n`);
        barOpen = false;
      } else if (lastTenth < 10) say(line(total));
    },
  };
  return bar;
}
