/**
 * The two ways a script fails, and the exit codes every script uses: 0 done, 1 the work failed
 * (build, network, server), 2 bad input or usage.
 */

/** Bad input: wrong flags, missing files the operator named, invalid values. Exit 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** The line after the error: what to do instead (for bad flags, the help). */
    readonly hint = "run with --help for usage",
  ) {
    super(message);
  }
}

/** The work failed: the build, the network, the server. Exit 1. */
export class Failure extends Error {}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
