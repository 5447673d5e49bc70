#!/usr/bin/env bun
/**
 * boot-broker: serves each booting runner machine its runner.env over HTTPS, with a credential
 * minted for that one boot (docs/boot-broker.md).
 *
 *   1. the configuration file: every mistake listed at once, exit 2, before anything listens;
 *   2. Forgejo: its version (>= 15 mints single-use credentials; older serves the operator's
 *      long-lived secrets, with warnings), the repository, and whether it accepts pull requests
 *      (host mode is refused for one that does, unless --allow-host-with-pull-requests);
 *   3. registrations left unused by an earlier run of the broker are deleted;
 *   4. serve: GET /v1/machines/<MAC>/runner.env from each machine's own address, one credential
 *      per boot, every decision one JSON line in the log; SIGTERM stops it.
 */
import { parseCommandLine, type CommandSpec } from "./lib/cli/command-line.ts";
import { Failure, UsageError } from "./lib/cli/errors.ts";
import { addSecret, say } from "./lib/cli/log.ts";
import { onInterrupt, runMain } from "./lib/cli/run-main.ts";
import { ForgejoClient } from "./lib/forgejo/client.ts";
import { tuningFromEnv } from "./lib/forgejo/http.ts";
import { loadConfig } from "./lib/broker/config.ts";
import { DecisionLog } from "./lib/broker/decision-log.ts";
import { checkForgejo, untilForgejoAnswers } from "./lib/broker/forgejo-check.ts";
import { startBrokerServer } from "./lib/broker/https-server.ts";
import { HOST_WITH_PRS_REASON, LEGACY_WARNING, Minter } from "./lib/broker/minter.ts";
import { RateLimit } from "./lib/broker/rate-limit.ts";
import { RunnersApi } from "./lib/broker/runners-api.ts";

export const COMMAND: CommandSpec = {
  name: "boot-broker.ts",
  summary: "Serve each booting runner machine a runner.env with a credential minted for that boot",
  flags: [
    { name: "config", value: "file", description: "The broker's configuration (.json, .yaml or .yml; docs/boot-broker.md)", requiredByHand: true },
    { name: "check", description: "Check the configuration and Forgejo, then exit without serving" },
    {
      name: "allow-host-with-pull-requests",
      description: "DANGEROUS: serve host-mode credentials although the repository accepts pull requests (a PR's workflow can then take the host runner)",
    },
    { name: "debug", description: "Show every API call" },
  ],
  sections: [
    {
      title: "Environment",
      body: [
        "  BROKER_FORGEJO_WAIT (s, 600)   at start: how long to wait for an unreachable Forgejo before giving up",
        "  CREDENTIALS_DIRECTORY          set by systemd's LoadCredential=; paths in the configuration may start with $CREDENTIALS_DIRECTORY/",
      ].join("\n"),
    },
    { title: "Exit codes", body: "  0 --check passed, 1 Forgejo refused or is unusable, 2 bad configuration or flags; serving, it runs until SIGTERM (exit 143) or Ctrl-C (130)" },
  ],
};

async function main(): Promise<void> {
  const args = parseCommandLine(COMMAND);
  if (!args) return;
  const { flags } = args;
  const override = flags["allow-host-with-pull-requests"] === true;

  // 1. The configuration, with the files it names (token, TLS, legacy secrets).
  if (typeof flags.config !== "string") throw new UsageError("give --config <file>: the broker's configuration (docs/boot-broker.md shows one)");
  const config = loadConfig(flags.config);
  const log = new DecisionLog(config.logFile);
  for (const secret of [config.forgejo.token, ...config.machines.map((m) => m.legacySecret ?? "")]) {
    addSecret(secret);
    log.addSecret(secret);
  }
  const hostMachines = config.machines.filter((m) => m.mode === "host").map((m) => m.name);

  // 2. Forgejo.
  const client = new ForgejoClient({ server: config.forgejo.url, owner: config.forgejo.owner, repo: config.forgejo.repo, token: config.forgejo.token, tuning: { ...tuningFromEnv(), retries: 0 } });
  const api = new RunnersApi(client, config.forgejo.level, config.maxForgejoCalls);
  const waitSeconds = Number(process.env.BROKER_FORGEJO_WAIT || 600);
  if (!Number.isFinite(waitSeconds) || waitSeconds < 0) throw new UsageError(`BROKER_FORGEJO_WAIT=${process.env.BROKER_FORGEJO_WAIT}: give a number of seconds`);
  const waitMs = waitSeconds * 1000;
  const facts = await checkForgejo(api, waitMs);
  const prsOpen = facts.repository.has_pull_requests !== false || config.forgejo.level !== "repository";
  say(`Forgejo ${facts.version} at ${config.forgejo.url}: ${facts.mintable ? "mints single-use credentials" : "cannot mint single-use credentials"}`);
  if (hostMachines.length && prsOpen) {
    const reason = config.forgejo.level === "repository" ? HOST_WITH_PRS_REASON(client.repoName) : `host mode at ${config.forgejo.level} level takes jobs of every repository there, and the broker cannot check them all for pull requests`;
    if (!override) throw new Failure(`${reason} (host-mode machines: ${hostMachines.join(", ")})`);
    say(`WARNING: --allow-host-with-pull-requests: ${reason}`);
    log.write({ event: "override", warning: `--allow-host-with-pull-requests at start: ${reason}` });
  }
  if (!facts.mintable) {
    const without = config.machines.filter((m) => !m.legacySecret).map((m) => m.name);
    if (without.length) throw new Failure(`${facts.why}; ${without.join(", ")} ${without.length === 1 ? "has" : "have"} no legacySecretFile to fall back on`);
    say(`WARNING: ${facts.why}. ${LEGACY_WARNING}`);
    log.write({ event: "long-lived-mode", warning: LEGACY_WARNING, reason: facts.why });
  }
  const minter = new Minter(api, config, log, { mintable: facts.mintable, allowHostWithPullRequests: override });
  minter.notePullRequests(prsOpen);

  // 3. What an earlier run left; it also proves the token may manage runners (owner, write scope).
  if (facts.mintable) await untilForgejoAnswers("listing the runners an earlier run left", () => minter.adopt(config.machines), waitMs);
  if (flags.check) {
    say(`configuration and Forgejo check out: ${config.machines.length} machines; not serving (--check)`);
    return;
  }

  // 4. Serve until stopped.
  const server = startBrokerServer(config, minter, new RateLimit(config.rateLimit.requests, config.rateLimit.perSeconds), log);
  onInterrupt(async () => {
    minter.stop();
    await server.stop();
    const left = minter.tracked();
    // Not deleted here: a machine may be using one. The next start deletes those left unused.
    say(`stopped; ${left.length} registrations handed out are left to Forgejo and the next start (${left.map((t) => t.id).join(", ") || "none"})`);
  });
  say(`boot broker serving ${config.machines.length} machines on ${server.url} (${facts.mintable ? "single-use credentials" : "long-lived secrets"})`);
  await new Promise(() => {});
}

if (import.meta.main) await runMain(main);
