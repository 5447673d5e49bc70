#!/usr/bin/env bun
/**
 * demo: the whole release path on this machine, with nothing but loopback and one temporary
 * directory (plus the Nix store, where every nix build writes):
 *   1. build the images of the test fixture with real nix, offline (tests/fixtures/flake: the
 *      real images' file names and shapes; its netboot target is a real Debian kernel and a
 *      busybox initrd when QEMU can boot it);
 *   2. start the Forgejo-compatible test server on 127.0.0.1 with a throwaway token;
 *   3. publish the dist with publish-release.ts, its provenance statement signed with a
 *      throwaway SSH key that only the demo's own allowed_signers trusts;
 *   4. verify the release with verify-release.ts, as anyone would;
 *   5. when QEMU is installed: boot the netboot chain from the release URL in a VM that reaches
 *      only the loopback servers; its runner.env comes from the boot broker
 *      (scripts/boot-broker.ts over HTTPS), which mints a registration for that boot on a v15
 *      test Forgejo; show the lines that prove it, the registration and the broker's log;
 *   6. print what to run against a real Forgejo.
 * Everything is removed at the end; with --keep the server stays up until Ctrl-C.
 */
import { rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Failure } from "../scripts/lib/cli/errors.ts";
import { onInterrupt, runMain } from "../scripts/lib/cli/run-main.ts";
import { parseCommandLine, type CommandSpec } from "../scripts/lib/cli/command-line.ts";
import { addSecret, say } from "../scripts/lib/cli/log.ts";
import { NAMESPACE } from "../scripts/lib/trust/signing.ts";
import { makeFixture, OFFLINE } from "../tests/support/fixture-flake.ts";
import { startForgejo, type ForgejoServer } from "../tests/support/forgejo-server.ts";
import { cleanEnv } from "../tests/support/run.ts";
import { makeSshKey, writeAllowedSigners } from "../tests/support/ssh-keys.ts";
import {
  bootChain, bootFilesMissing, qemuMissing, brokerGuestUrl, cmdlineSeen, GUEST_MAC, GUEST_MAC_HEXHYP, guestUrl, makeBootFiles, operatorScript,
} from "../tests/support/netboot-vm.ts";
import { ask, makeTls, startBroker, type Tls } from "../tests/support/broker.ts";

const COMMAND: CommandSpec = {
  name: "demo.ts",
  summary: "Build, publish, verify and boot a release of the test fixture, on loopback only",
  flags: [
    { name: "keep", description: "Leave the server up afterwards (until Ctrl-C) to explore the release with curl or a browser" },
    { name: "skip-boot", description: "Skip the QEMU boot of the netboot chain" },
  ],
  sections: [{ title: "Exit codes", body: "  0 done (everything cleaned up), 1 a step failed, 2 bad flags" }],
};

const ROOT = join(import.meta.dir, "..");
const OWNER = "demo";
const REPO = `${OWNER}/runner-images`;
const TAG = "boot-v0.1.0";
const STEPS = 5;

const step = (n: number, what: string) => say(`\n[${n}/${STEPS}] ${what}`);
/** What a terminal shows of a console line: colour codes dropped, backspaces applied. */
function plain(line: string): string {
  let shown = "";
  for (const ch of line.replace(/\x1b(\[[0-9;?]*[a-zA-Z]|c)/g, "")) {
    if (ch === "\b") shown = shown.slice(0, -1);
    else if (ch >= " ") shown += ch;
  }
  return shown.trim();
}

/** Runs one of the project's scripts as the user would, its output indented under the step. */
async function run(script: string, args: string[], env: Record<string, string> = {}): Promise<void> {
  const shown = args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a}'`));
  // The environment it gets, by name only (the token is a secret).
  const envShown = Object.keys(env).map((name) => `${name}=… `).join("");
  say(`  $ ${envShown}bun scripts/${script} ${shown.join(" ")}`);
  const child = Bun.spawn([process.execPath, join(ROOT, "scripts", script), ...args], {
    cwd: ROOT,
    env: cleanEnv(env),
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  const stopChild = onInterrupt(() => child.kill());
  let pending = "";
  for await (const chunk of child.stderr) {
    pending += new TextDecoder().decode(chunk);
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) say(`    ${line}`);
  }
  if (pending) say(`    ${pending}`);
  const code = await child.exited;
  stopChild();
  if (code !== 0) throw new Failure(`${script} failed (exit ${code}); its output is above`);
}

/** A throwaway SSH signing key and the allowed_signers file that trusts only it. */
async function signingKey(dir: string): Promise<{ key: string; allowedSigners: string }> {
  const key = await makeSshKey(join(dir, "signing-key"), { comment: "demo-signer" });
  return { key: key.file, allowedSigners: await writeAllowedSigners(join(dir, "allowed_signers"), [["demo@runner-images", NAMESPACE.publisher, key]]) };
}

/** verify-release.ts's flags for a release signed by the demo key: the one place that knows them. */
const verifySignatureFlags = (allowedSigners: string) => ["--allowed-signers", allowedSigners];

async function demo(work: string, stops: (() => unknown)[], keep: boolean, skipBoot: boolean): Promise<void> {
  say(`runner-images demo: build, publish, verify and boot a release on this machine`);
  say(`(working in ${work}; servers on 127.0.0.1 only; removed at the end)`);

  const cannotBoot = skipBoot ? "--skip-boot was given" : (qemuMissing() ?? (await bootFilesMissing()));

  step(1, "build the fixture's images with real nix, offline");
  if (!cannotBoot) say("  the netboot target is bootable: Debian's kernel and a busybox initrd that runs nix/runner-secret.sh (trusting the boot broker's throwaway CA)");
  const tls = cannotBoot ? null : await makeTls(join(work, "tls"));
  const fixture = await makeFixture(cannotBoot ? "ok" : "bootable", {
    parent: work,
    boot: cannotBoot ? undefined : await makeBootFiles(join(work, "boot"), tls!.ca),
  });
  const dist = join(work, "dist");
  await run("build-images.ts", ["--flake", fixture.dir, "--out", dist, ...OFFLINE]);

  step(2, "start a Forgejo-compatible server on loopback (tests/support/forgejo-server.ts)");
  const token = `fjt_demo_${Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex")}`;
  addSecret(token);
  const forge = await startForgejo({ owner: OWNER, repo: "runner-images", commits: [fixture.commit], tokens: { [token]: { user: OWNER, access: "write" } } });
  stops.push(() => forge.stop());
  say(`  ${forge.url}, repository ${REPO}, a throwaway write token for user ${OWNER}`);

  step(3, `publish the dist as ${REPO} ${TAG}, its provenance statement signed with a throwaway SSH key`);
  const signer = await signingKey(work);
  say("  (publish-release warns that the repository's allowed_signers does not know this key: the demo's own allowed_signers does)");
  const server = ["--server", forge.url, "--repo", REPO];
  await run("publish-release.ts", ["--dist", dist, ...server, "--tag", TAG, "--signing-key", signer.key], { FORGEJO_TOKEN: token });

  step(4, "verify the release by download, as anyone would (no token)");
  await run("verify-release.ts", [...server, "--tag", TAG, ...verifySignatureFlags(signer.allowedSigners)]);

  const download = `${forge.url}/${REPO}/releases/download/${TAG}`;
  step(5, "boot the netboot chain from the release URL in QEMU");
  if (cannotBoot) {
    say(`  skipped: ${cannotBoot}`);
  } else {
    await boot(forge, download, work, stops, tls!);
  }

  say("\nWhat you do next, with your Forgejo (a token with write:repository; the real images need nixpkgs):");
  say("  bun scripts/build-images.ts");
  say("  FORGEJO_TOKEN=... bun --smol scripts/publish-release.ts --server https://forge.example --repo ops/runner-images --tag boot-v1.0.0 --signing-key <key>");
  say("  bun scripts/verify-release.ts --server https://forge.example --repo ops/runner-images --tag boot-v1.0.0 --signer-fingerprint SHA256:<key's>");
  say('  the signing key, its fingerprint and allowed_signers: docs/RUNNER_IMAGES.md, "Signing releases";');
  say('  then boot it: "Boot over the network" and "Registration", runner.env served by the boot broker (docs/boot-broker.md)');

  if (keep) {
    say(`\nThe server stays up: try  curl ${download}/SHA256SUMS`);
    say(`  or open ${forge.url}/${REPO}/releases/tag/${TAG} in a browser (the release page publish-release printed)`);
    say("Press Ctrl-C to stop it and remove the temporary directory.");
    await new Promise(() => {}); // Ctrl-C runs cleanUp (onInterrupt) and exits
  }
}

/** Step 5: the operator's iPXE script chains the release; the serial console, the servers and the broker's log prove it. */
async function boot(forge: ForgejoServer, download: string, work: string, stops: (() => unknown)[], tls: Tls): Promise<void> {
  // The boot broker, as an operator runs it, against a second test Forgejo that speaks v15's
  // runner API; the VM's machine entry says 127.0.0.1 because QEMU's relay connects from there.
  const runners = await startForgejo({ version: "15.0.3", hasPullRequests: false });
  stops.push(() => runners.stop());
  const broker = await startBroker({ tls, forgejoUrl: runners.url, machines: [{ name: "demo-vm", mac: GUEST_MAC, address: "127.0.0.1", mode: "container", labels: ["docker"] }] }, join(work, "broker"));
  stops.push(() => broker.stop());
  if (!broker.port) throw new Failure(`the boot broker did not start:\n${broker.output()}`);
  say(`  the boot broker (bun scripts/boot-broker.ts --config …) serves ${broker.url}, minting on a v15 test Forgejo at ${runners.url}`);
  const script = operatorScript(guestUrl(`${download}/netboot-x86_64.ipxe`), brokerGuestUrl(broker.port));
  say("  the operator's iPXE script (the VM's DHCP boot file; the VM reaches only the loopback servers):");
  for (const line of script.trim().split("\n")) say(`    ${line}`);
  say("  the VM's serial console (TCG, about 20 s):");
  const before = forge.requests.length;
  let wrapped = ""; // iPXE wraps its lines at 80 columns
  const result = await bootChain({
    script,
    ports: [Number(new URL(download).port), broker.port],
    workDir: join(work, "vm"),
    started: (vm) => onInterrupt(() => vm.kill()),
    onLine: (line) => {
      const text = wrapped + plain(line);
      wrapped = text.length % 80 === 0 && text.length > 0 ? text : "";
      if (wrapped) return;
      if (/^(iPXE \d|http:\/\/|bzImage-x86_64|initrd-x86_64|netboot-fixture:|forgejo-runner-secret:)/.test(text)) say(`    ${credentialShort(text)}`);
    },
  });
  const cmdline = cmdlineSeen(result.serial);
  const loaded = forge.requests.slice(before).filter((r) => r.status === 200).map((r) => r.path.split("/").pop());
  say(`  the release server saw downloads of: ${loaded.join(", ")}`);
  const minted = runners.runners.list();
  for (const r of minted) say(`  the registration the broker minted for this boot: id ${r.id}, name ${r.name}, ephemeral ${r.ephemeral} (container mode)`);
  const served = broker.log().find((l) => l.event === "served");
  // The same boot asking again, and someone at another address: both refused, neither mints.
  const again = served ? await ask(broker, tls, GUEST_MAC_HEXHYP, String(served.boot), "127.0.0.1") : null;
  const elsewhere = await ask(broker, tls, GUEST_MAC_HEXHYP, crypto.randomUUID(), "127.0.0.2");
  say(`  a second request for that boot: ${again?.status} ${again?.body.trim()}`);
  say(`  a request from 127.0.0.2: ${elsewhere.status} ${elsewhere.body.trim()}`);
  say("  the broker's decision log (JSON lines; no token or uuid is ever in it):");
  for (const line of broker.log()) say(`    ${JSON.stringify(line)}`);
  const chained = ["netboot-x86_64.ipxe", "bzImage-x86_64", "initrd-x86_64"].every((name) => loaded.includes(name));
  const registered = result.serial.includes("netboot-fixture: .runner 600 root ");
  if (!result.completed || !chained || !cmdline?.includes("runner.config_url=") || !served || minted.length !== 1 || !registered || again?.status !== 409 || elsewhere.status !== 403) {
    throw new Failure(`the netboot chain did not complete${result.timedOut ? " (timed out)" : ""}; the serial console said:\n${result.serial}\nthe broker said:\n${broker.output()}`);
  }
  say("  proven: iPXE chained the release script and loaded bzImage-x86_64 and initrd-x86_64 by relative URL;");
  say("  the kernel command line holds the release script's parameters plus the operator's runner.config_url;");
  say(`  the initrd's nix/runner-secret.sh asked the boot broker over HTTPS and wrote registration ${minted[0]!.id}'s credential, minted for this boot;`);
  say("  the broker refused a second request of that boot (409) and a request from another address (403)");
}

/** The fixture's ".runner" line without forgejo-runner's long WARNING field, and never the token. */
function credentialShort(line: string): string {
  const m = /^(netboot-fixture: \.runner \S+ \S+ \S+) (\{.*\})$/.exec(line);
  if (!m) return line;
  const { uuid, name, address } = JSON.parse(m[2]!) as Record<string, string>;
  return `${m[1]} ${JSON.stringify({ uuid, name, address, token: "[redacted]" })}`;
}

await runMain(async () => {
  const args = parseCommandLine(COMMAND);
  if (!args) return;

  const work = await mkdtemp(join(tmpdir(), "runner-images-demo-"));
  // `bun run demo` delivers each Ctrl-C twice (the terminal's, then its own forward), and a
  // second one exits at once, mid clean-up: the directory also goes as the process exits.
  // Synchronously in both places: an async rm still running at exit leaves half the tree.
  const removeWork = () => rmSync(work, { recursive: true, force: true });
  process.on("exit", removeWork);
  const stops: (() => Promise<unknown> | unknown)[] = [];
  let cleaning: Promise<void> | undefined;
  // Once, whoever comes first: the end, a failure, or Ctrl-C.
  const cleanUp = () =>
    (cleaning ??= (async () => {
      for (const stop of [...stops].reverse()) await stop();
      removeWork();
    })());
  onInterrupt(cleanUp);
  try {
    await demo(work, stops, args.flags.keep === true, args.flags["skip-boot"] === true);
  } finally {
    await cleanUp();
  }
  say("\ndone: the server is stopped and the temporary directory removed");
});
