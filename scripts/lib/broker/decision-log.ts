/**
 * The broker's decision log: one JSON object per line for every request and every action it
 * takes on Forgejo (who asked, what was decided, which registration). Only the fields below can
 * be written, and none of them can hold a credential: a token or uuid never reaches this file.
 * Long-lived secrets the broker holds (its Forgejo token, the operator's legacy secrets) are
 * registered too, so a message that quoted one by mistake is redacted, never written.
 */
import { appendFileSync } from "node:fs";

export interface Decision {
  /** What happened: "served", "refused", "minted", "deleted", "kept", "forgejo-down", ... */
  event: string;
  machine?: string;
  mac?: string;
  /** The TCP source address of the request. */
  source?: string;
  boot?: string;
  mode?: string;
  /** HTTP status answered to the machine. */
  status?: number;
  /** Forgejo's id of the registration (public: it is in the runners list and the web UI). */
  registration?: number;
  /** The registration's name, <machine>-<boot id>. */
  name?: string;
  /** "minted" (single-use, Forgejo >= 15) or "long-lived" (the operator's secret, older Forgejo). */
  credential?: "minted" | "long-lived";
  /** Why, in words, with what to do when it is the operator's move. */
  reason?: string;
  warning?: string;
  attempt?: number;
  latencyMs?: number;
}

export class DecisionLog {
  private readonly secrets = new Set<string>();
  /** The last lines, for tests, the demo and the bench. */
  readonly recent: string[] = [];

  constructor(
    /** "-" for stdout, a path to append to, or null to keep lines in memory only. */
    private readonly file: string | null,
    private readonly keep = 1000,
  ) {}

  /** A value that must never be written (long-lived secrets). */
  addSecret(value: string): void {
    if (value.length >= 6) this.secrets.add(value);
  }

  write(decision: Decision): void {
    let line = JSON.stringify({ time: new Date().toISOString(), ...decision });
    for (const secret of this.secrets) line = line.replaceAll(secret, "[redacted]");
    this.recent.push(line);
    if (this.recent.length > this.keep) this.recent.shift();
    if (this.file === "-") process.stdout.write(`${line}\n`);
    else if (this.file) appendFileSync(this.file, `${line}\n`, { mode: 0o640 });
  }
}
