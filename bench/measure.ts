/**
 * Running and timing child processes for the benchmarks: wall time (measured here, around the
 * spawn), peak RSS of the child (GNU time's "Maximum resident set size", or VmHWM polled from
 * /proc when GNU time is not installed), exit code and output.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Sample {
  /** Wall time in seconds, spawn to exit. */
  wall: number;
  /** Peak resident set size in bytes (0 if it could not be measured). */
  maxRss: number;
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunSpec {
  cmd: string[];
  cwd?: string;
  env?: Record<string, string | undefined>;
}

/** The GNU time binary, or null (the shell keyword `time` cannot report peak RSS). */
export function gnuTime(): string | null {
  for (const candidate of ["/usr/bin/time", Bun.which("time")]) {
    if (!candidate || !existsSync(candidate)) continue;
    const probe = Bun.spawnSync([candidate, "--version"], { stdout: "pipe", stderr: "pipe" });
    if (`${probe.stdout}${probe.stderr}`.includes("GNU")) return candidate;
  }
  return null;
}

const TIME = gnuTime();
let counter = 0;

/** Runs `spec` once and measures it. Throws if it exits non-zero. */
export async function measure(spec: RunSpec): Promise<Sample> {
  const report = join(tmpdir(), `bench-time-${process.pid}-${counter++}.txt`);
  const cmd = TIME ? [TIME, "-v", "-o", report, ...spec.cmd] : spec.cmd;
  const started = performance.now();
  const child = Bun.spawn(cmd, {
    cwd: spec.cwd,
    env: spec.env ?? (process.env as Record<string, string>),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  // Without GNU time: VmHWM (the kernel's own peak RSS) read until the child goes away.
  let hwm = 0;
  const poll = TIME
    ? null
    : setInterval(() => {
        try {
          const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
          if (m) hwm = Math.max(hwm, Number(m[1]) * 1024);
        } catch {
          // exited
        }
      }, 5);
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  const wall = (performance.now() - started) / 1000;
  if (poll) clearInterval(poll);
  let maxRss = hwm;
  if (TIME) {
    try {
      const text = readFileSync(report, "utf8");
      const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(text);
      if (m) maxRss = Number(m[1]) * 1024;
    } finally {
      rmSync(report, { force: true });
    }
  }
  if (code !== 0) {
    throw new Error(`${spec.cmd.join(" ")} exited ${code}:\n${stderr.slice(-2000)}${stdout.slice(-1000)}`);
  }
  return { wall, maxRss, code, stdout, stderr };
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Flushes dirty pages, so one run's write-back does not land in the next run's time. */
export function sync(): void {
  Bun.spawnSync(["sync"]);
}

export const MiB = 1024 * 1024;
export const fmtMBs = (bytes: number, seconds: number) => `${(bytes / seconds / 1e6).toFixed(0)} MB/s`;
export const fmtMiB = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
export const fmtS = (s: number) => (s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`);
