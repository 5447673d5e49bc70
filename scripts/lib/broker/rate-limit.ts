/**
 * Per-machine rate limit: at most `requests` requests in any `perSeconds` window. A machine asks
 * once a boot; a machine asking faster is looping or is being imitated, and each answer may cost
 * a registration on Forgejo.
 */
export class RateLimit {
  private readonly seen = new Map<string, number[]>();

  constructor(
    private readonly requests: number,
    private readonly perSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one request; returns 0 when allowed, else the seconds until the next one is. */
  take(key: string): number {
    const now = this.now();
    const windowStart = now - this.perSeconds * 1000;
    const times = (this.seen.get(key) ?? []).filter((t) => t > windowStart);
    if (times.length >= this.requests) {
      this.seen.set(key, times);
      return Math.max(1, Math.ceil((times[0]! - windowStart) / 1000));
    }
    times.push(now);
    this.seen.set(key, times);
    return 0;
  }
}
