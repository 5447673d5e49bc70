/**
 * How a script ends: its outcome becomes an exit code (0 done, 1 failed, 2 bad input) and, on
 * failure, one line on stderr that says what failed and what to do (--debug adds the stack).
 * Ctrl-C / SIGTERM run the registered clean-ups (stop nix, remove half-written files) and exit
 * 130 / 143.
 */
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from "./errors.ts";
import { isDebug, say } from "./log.ts";

type Cleanup = () => Promise<void> | void;
const cleanups: Cleanup[] = [];
let interrupted: NodeJS.Signals | null = null;
let interruptedAt = 0;
/**
 * One Ctrl-C can arrive twice at once: the terminal signals its whole process group, and
 * `bun run` forwards the same signal to the script. A repeat this soon is that echo, not the
 * operator's second Ctrl-C.
 */
const SAME_INTERRUPT_MS = 1000;

/**
 * Registers work to undo if the operator interrupts (stop a child, delete a staging directory).
 * Returns a function that unregisters it once the work is safely done.
 */
export function onInterrupt(cleanup: Cleanup): () => void {
  cleanups.push(cleanup);
  return () => {
    const i = cleanups.indexOf(cleanup);
    if (i !== -1) cleanups.splice(i, 1);
  };
}

const SIGNAL_EXIT: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143 };

function installSignalHandlers(): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, async () => {
      if (interrupted) {
        if (signal === interrupted && Date.now() - interruptedAt < SAME_INTERRUPT_MS) return;
        // A second Ctrl-C while cleaning up means "now".
        process.exit(SIGNAL_EXIT[signal]);
      }
      interrupted = signal;
      interruptedAt = Date.now();
      // The clean-ups say what they undo and what is left; this line only marks the moment.
      say(`interrupted (${signal})`);
      for (const cleanup of [...cleanups].reverse()) {
        try {
          await cleanup();
        } catch (error) {
          say(`clean-up failed: ${describeError(error)}`);
        }
      }
      process.exit(SIGNAL_EXIT[signal]);
    });
  }
}

/** What the common system error codes mean, said without the runtime's wording. */
const SYSTEM_ERRORS: Record<string, string> = {
  ENOENT: "it does not exist",
  EACCES: "permission denied",
  EPERM: "not permitted",
  ENOSPC: "no space left on the disk",
  EDQUOT: "the disk quota is used up",
  EROFS: "the file system is read-only",
  EISDIR: "it is a directory",
  ENOTDIR: "a part of its path is not a directory",
  EEXIST: "it already exists",
  EIO: "an I/O error",
};

/**
 * An error for the operator's eyes: a file-system error that no step mapped (a dangling link, a
 * full disk) becomes "cannot <call> <path>: <cause> (<code>)"; the runtime's own text never shows.
 */
function describeError(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  if (e instanceof Error && typeof e.code === "string" && typeof e.syscall === "string") {
    const cause = `${SYSTEM_ERRORS[e.code] ?? "failed"} (${e.code})`;
    return `cannot ${e.syscall}${e.path ? ` ${e.path}` : ""}: ${cause}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Runs a script's main function and turns its outcome into an exit code and, on failure, one
 * line on stderr. Never returns.
 */
export async function runMain(main: () => Promise<void>): Promise<never> {
  installSignalHandlers();
  let code = EXIT_OK;
  try {
    await main();
  } catch (error) {
    // After a signal the main flow fails as its child dies; the signal handler owns the exit.
    if (interrupted) await new Promise(() => {});
    code = error instanceof UsageError ? EXIT_USAGE : EXIT_FAILED;
    say(`error: ${describeError(error)}`);
    if (error instanceof UsageError) say(error.hint);
    if (isDebug() && error instanceof Error && error.stack) say(error.stack);
  }
  process.exit(code);
}
