/**
 * HTTP mechanics the release client needs, with no Forgejo knowledge: which failures are worth
 * a retry and how long to wait, timeouts that fire on stalled progress rather than total time,
 * and one-line explanations of network errors.
 */
import { Failure, UsageError } from "../cli/errors.ts";

/** Tuning, overridable from the environment (tests use short values). */
export interface HttpTuning {
  /**
   * First contact: how long a server may take to start answering before it counts as down, ms.
   * Short, and never retried: a server that never answered is named at once, not after minutes.
   */
  connectMs: number;
  /** Limit for one ordinary API call to a server that has answered before, ms. */
  timeoutMs: number;
  /** An upload or download fails when no byte moved for this long, ms. */
  stallMs: number;
  /** Attempts after the first, for the failures worth retrying. */
  retries: number;
  /** First backoff delay, ms; doubles each attempt, with jitter. */
  retryBaseMs: number;
}

export function tuningFromEnv(env: Record<string, string | undefined> = process.env): HttpTuning {
  // A setting the operator gave that is not a number is bad input (exit 2), like a bad flag.
  const read = (name: string, fallback: number, unit: string) => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0) throw new UsageError(`${name}=${raw}: give a number of 0 or more (${unit})`, "the Environment section of --help lists the settings");
    return value;
  };
  return {
    connectMs: read("RUNNER_IMAGES_CONNECT_TIMEOUT", 10, "seconds") * 1000,
    timeoutMs: read("RUNNER_IMAGES_HTTP_TIMEOUT", 60, "seconds") * 1000,
    stallMs: read("RUNNER_IMAGES_STALL_TIMEOUT", 120, "seconds") * 1000,
    retries: read("RUNNER_IMAGES_RETRIES", 5, "attempts"),
    retryBaseMs: read("RUNNER_IMAGES_RETRY_DELAY_MS", 1000, "milliseconds"),
  };
}

/** The settings tuningFromEnv reads, with their units and defaults, for a script's --help. */
export const TUNING_HELP = [
  "  RUNNER_IMAGES_CONNECT_TIMEOUT (s, 10)   first contact: a server that does not answer by then is down (never retried)",
  "  RUNNER_IMAGES_HTTP_TIMEOUT (s, 60), RUNNER_IMAGES_STALL_TIMEOUT (s, 120),",
  "  RUNNER_IMAGES_RETRIES (5), RUNNER_IMAGES_RETRY_DELAY_MS (1000)   network tuning once the server has answered",
];

/** Statuses a retry can fix: rate limits and proxies/servers that were briefly unavailable. */
const TRANSIENT = new Set([429, 502, 503, 504]);

/**
 * Whether a response status is worth another attempt. A 500 is retried only when repeating the
 * call cannot do harm twice (GET, PATCH, DELETE); other 4xx never.
 */
export function retryableStatus(status: number, idempotent: boolean): boolean {
  return TRANSIENT.has(status) || (status === 500 && idempotent);
}

/** How long to wait before attempt `attempt` (1-based): exponential, with ±50 % jitter, capped. */
export function backoffMs(attempt: number, baseMs: number, retryAfter?: string | null): number {
  const after = parseRetryAfter(retryAfter);
  if (after !== null) return Math.min(after, 300_000);
  const exp = baseMs * 2 ** (attempt - 1);
  return Math.min(exp * (0.5 + Math.random()), 30_000);
}

/** Retry-After as seconds or an HTTP date, in ms; null when absent or unreadable. */
export function parseRetryAfter(value?: string | null): number | null {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}

/** Network-level failure (no HTTP status): refused, reset, TLS, DNS, timeout. */
export class NetworkError extends Failure {
  constructor(
    message: string,
    readonly code: string,
    /** True for failures another attempt may not hit (reset, refused while restarting, timeouts). */
    readonly transient: boolean,
  ) {
    super(message);
  }
}

/** Codes of a connection that broke after it was made: the runtime's own text says no more. */
const CUT_OFF = new Set(["ECONNRESET", "EPIPE", "ConnectionClosed", "ECONNABORTED", "UND_ERR_SOCKET"]);

/**
 * Turns what fetch (or reading its body) threw into a NetworkError whose message says what to
 * check. The runtime's own message never reaches the operator: only its code does.
 */
export function explainNetworkError(error: unknown, what: string, origin: string, answeredBefore = false): NetworkError {
  const e = error as { name?: string; code?: string | number; message?: string };
  const code = typeof e?.code === "string" ? e.code : e?.name ?? "unknown";
  if (code === "ECONNREFUSED" && answeredBefore) {
    return new NetworkError(`${what}: connection to ${origin} refused, though it answered earlier in this run: is Forgejo restarting or gone?`, code, true);
  }
  if (error instanceof FirstContactTimeout) {
    return new NetworkError(
      `${what}: ${origin} accepted the connection but did not answer within ${error.seconds} s; is --server right and the server up? (RUNNER_IMAGES_CONNECT_TIMEOUT sets the wait)`,
      "ETIMEDOUT",
      true,
    );
  }
  if (code === "ECONNREFUSED") {
    return new NetworkError(`${what}: connection to ${origin} refused; is --server right and the server up?`, code, true);
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return new NetworkError(`${what}: the host of ${origin} does not resolve (${code}); check --server`, code, code === "EAI_AGAIN");
  }
  if (/CERT|SIGNATURE|TLS|SSL/i.test(code)) {
    return new NetworkError(
      `${what}: TLS with ${origin} failed (${code}); if the server uses a private CA, point NODE_EXTRA_CA_CERTS at its certificate`,
      code,
      false,
    );
  }
  if (code === "UnexpectedRedirect") {
    return new NetworkError(`${what}: ${origin} answered with a redirect; give the final URL as --server (redirects are not followed with a token)`, code, false);
  }
  if (e?.name === "TimeoutError" || e?.name === "AbortError" || e instanceof StallError) {
    return new NetworkError(`${what}: ${e instanceof StallError ? e.message : "timed out"} talking to ${origin}`, "ETIMEDOUT", true);
  }
  if (CUT_OFF.has(code)) return new NetworkError(`${what}: the connection to ${origin} was cut off (${code})`, code, true);
  return new NetworkError(`${what}: network error talking to ${origin} (${code})`, code, true);
}

export class StallError extends Error {}

/** The first request to a server got no answer within the connect timeout. */
export class FirstContactTimeout extends Error {
  constructor(readonly seconds: number) {
    super(`no answer within ${seconds} s`);
  }
}

/**
 * A watchdog for long transfers: `signal` aborts when `touch()` has not been called for `ms`.
 * Uploads and downloads of a 2 GB image may take many minutes; only a transfer that stops moving
 * is a failure.
 */
export function stallGuard(ms: number): { signal: AbortSignal; touch(): void; stop(): void } {
  const controller = new AbortController();
  let last = Date.now();
  const timer = setInterval(() => {
    if (Date.now() - last > ms) {
      controller.abort(new StallError(`no progress for ${Math.round(ms / 1000)} s`));
      clearInterval(timer);
    }
  }, Math.min(1000, Math.max(50, ms / 4)));
  return {
    signal: controller.signal,
    touch: () => {
      last = Date.now();
    },
    stop: () => clearInterval(timer),
  };
}

/** True for http:// URLs on the loopback interface, the only place plain HTTP is accepted by default. */
export function isLoopback(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
