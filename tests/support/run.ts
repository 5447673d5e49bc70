/** Runs a project script as an operator would: a separate `bun` process, output captured. */
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "..", "..");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Replaces the environment (PATH and HOME are kept unless given). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Called with the child once it runs (to signal it). */
  started?: (child: Bun.Subprocess) => void;
}

/** The environment a script sees in tests: no CI variables or tokens leak in from the host. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { PATH: process.env.PATH, HOME: process.env.HOME, LANG: "C.UTF-8" };
  return { ...env, ...extra };
}

/** Runs scripts/<script> (publish-release.ts, …) with `bun`. */
export function runScript(script: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return runBun(join(ROOT, "scripts", script), args, options);
}

/** Runs any TypeScript file of the project (demo/demo.ts, …) with `bun`, as runScript does. */
export async function runBun(file: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const child = Bun.spawn([process.execPath, file, ...args], {
    cwd: options.cwd ?? ROOT,
    env: options.env ?? cleanEnv(),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  options.started?.(child);
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code, stdout, stderr };
}
