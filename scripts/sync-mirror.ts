#!/usr/bin/env bun
/**
 * sync-mirror: keeps a PXE/HTTP mirror on a signed channel (promote.ts moves channels). The
 * machines boot <mirror>/<channel>/netboot-x86_64.ipxe; that pointer moves only to a release
 * the channel's maintainer signed for, newer (by serial) than the one the mirror holds, not
 * expired, and verified whole by verify-release.
 *
 * The steps, in order:
 *   1. check the trust anchors (who may sign channels, who may sign releases) and the mirror;
 *   2. download <channel>.json and its signature from the `channels` release;
 *   3. the channel statement: signed in runner-images-channel by a key allowed to, for this
 *      channel and repository, not expired, its serial higher than the one the mirror holds (the
 *      same serial naming the same release: nothing to do);
 *   4. verify-release --download: the named release, every byte, staged in the mirror, its
 *      statement's SHA-256 the one the channel names; only then does <mirror>/<channel> move
 *      (one rename); the previous --keep releases stay for a rollback;
 *   5. record the accepted statement in <mirror>/channels/ (the floor for the next serial).
 * With --watch SECONDS it repeats for ever; a failed round leaves the mirror as it was and says why.
 */
import { join } from "node:path";
import { Failure, UsageError } from "./lib/cli/errors.ts";
import { onInterrupt, runMain } from "./lib/cli/run-main.ts";
import { parseCommandLine, type CommandSpec } from "./lib/cli/command-line.ts";
import { say } from "./lib/cli/log.ts";
import { SERVER_FLAGS } from "./lib/cli/server-flags.ts";
import { TUNING_HELP } from "./lib/forgejo/http.ts";
import { findRelease } from "./lib/forgejo/find-release.ts";
import { CHANNELS_TAG, CHANNEL_NAMESPACE, channelFile, channelSignatureFile, checkPointerName, decideChannel, parseChannelStatement, readHeld, writeHeld } from "./lib/trust/channel.ts";
import { checkMirrorWritable, parseKeep, pointedTag } from "./lib/trust/mirror.ts";
import { NAMESPACE, REPOSITORY_ALLOWED_SIGNERS, checkTrust, verifySignature, type Trust } from "./lib/trust/signing.ts";

const VERIFY_RELEASE = join(import.meta.dir, "verify-release.ts");

const COMMAND: CommandSpec = {
  name: "sync-mirror.ts",
  summary: "Move a PXE/HTTP mirror to the release a signed channel names, verified whole; refuse a replayed, expired or unsigned channel",
  flags: [
    { name: "channel", value: "name", description: "Required: the channel to follow, e.g. stable" },
    { name: "mirror", value: "dir", description: "Required: the mirror directory (machines boot DIR/<channel>/netboot-x86_64.ipxe)" },
    ...SERVER_FLAGS,
    { name: "channel-signers", value: "file", description: "Who may sign channel statements: an allowed_signers file (default: this checkout's), keys limited to namespaces=\"runner-images-channel\"" },
    { name: "channel-signer-fingerprint", value: "SHA256:…", description: "Trust exactly this maintainer key for channel statements instead" },
    { name: "allowed-signers", value: "file", description: "Whose release signatures count (passed to verify-release)" },
    { name: "signer-fingerprint", value: "SHA256:…", description: "Trust exactly this publisher key for the release (passed to verify-release)" },
    { name: "require-countersignature", description: "Also require the maintainer's countersignature on the release (passed to verify-release)" },
    { name: "keep", value: "n", description: "Keep the N newest releases no pointer names, for a rollback (default 2)" },
    { name: "watch", value: "seconds", description: "Sync again every SECONDS, for ever (a failed round is reported and retried)" },
    { name: "token-file", value: "file", description: "Token for a private repository (public releases need none)" },
    { name: "boot-root", value: "file", description: "The fleet's boot-signing root: every boot file's .sig must verify against it (passed to verify-release; default: nix/boot-root.pem if the checkout has one)" },
    { name: "debug", description: "Log every request and show stack traces" },
  ],
  sections: [
    { title: "Environment", body: TUNING_HELP.join("\n") },
    { title: "Exit codes", body: "  0 the mirror is on the channel's release, 1 refused or failed (the mirror is as it was), 2 bad flags or input" },
    {
      title: "Examples",
      body: [
        "  bun scripts/sync-mirror.ts --server https://forge.example --repo ops/runner-images --channel stable --mirror /srv/netboot \\",
        "      --channel-signer-fingerprint SHA256:… --signer-fingerprint SHA256:…",
      ].join("\n"),
    },
  ],
};

await runMain(async () => {
  const args = parseCommandLine(COMMAND, process.argv.slice(2));
  if (!args) return;
  const flags = args.flags;
  const channel = flags.channel as string | undefined;
  const mirror = flags.mirror as string | undefined;
  if (!channel || !mirror) throw new UsageError("give --channel <name> and --mirror <dir>");
  checkPointerName(channel, "--channel");
  const keep = parseKeep(flags.keep as string | undefined);
  const watch = flags.watch as string | undefined;
  if (watch !== undefined && (!/^\d{1,6}$/.test(watch) || Number(watch) < 1)) throw new UsageError(`--watch ${watch}: give seconds between syncs, e.g. --watch 300`);

  // 1. Trust anchors and the mirror, before anything is downloaded.
  const channelFingerprint = flags["channel-signer-fingerprint"] as string | undefined;
  const channelTrust: Trust = channelFingerprint ? { fingerprint: channelFingerprint } : { allowedSigners: (flags["channel-signers"] as string | undefined) ?? REPOSITORY_ALLOWED_SIGNERS };
  await checkTrust(channelTrust, CHANNEL_NAMESPACE, "--channel-signer-fingerprint");
  const releaseFingerprint = flags["signer-fingerprint"] as string | undefined;
  const allowedSigners = (flags["allowed-signers"] as string | undefined) ?? REPOSITORY_ALLOWED_SIGNERS;
  await checkTrust(releaseFingerprint ? { fingerprint: releaseFingerprint } : { allowedSigners }, NAMESPACE.publisher, "--signer-fingerprint");
  await checkMirrorWritable(mirror, "--mirror");
  const server = { server: flags.server as string | undefined, repo: flags.repo as string | undefined, insecureHttp: flags["insecure-http"] === true, tokenFile: flags["token-file"] as string | undefined };

  const syncOnce = async (): Promise<void> => {
    // 2. The channel statement, as the server offers it.
    const { client, release } = await findRelease(server, CHANNELS_TAG);
    const read = async (name: string) => {
      if (!release.assets.some((a) => a.name === name)) throw new Failure(`the ${CHANNELS_TAG} release has no ${name}: channel ${channel} was never promoted (promote.ts), or the server withholds it`);
      const asset = release.assets.filter((a) => a.name === name);
      if (asset.length !== 1) throw new Failure(`the ${CHANNELS_TAG} release has ${asset.length} files named ${name}`);
      return client.downloadSmall(asset[0]!.browser_download_url, `downloading ${name}`);
    };
    const bytes = await read(channelFile(channel));
    const signature = await read(channelSignatureFile(channel));

    // 3. Signed by a channel key, for this channel and repository, fresh, newer than what is held.
    const signed = await verifySignature(bytes, signature, { data: channelFile(channel), signature: channelSignatureFile(channel) }, CHANNEL_NAMESPACE, channelTrust);
    if (!signed.ok) throw new Failure(`channel ${channel}: ${signed.problem}; the mirror is as it was`);
    const offered = parseChannelStatement(bytes);
    if (typeof offered === "string") throw new Failure(`channel ${channel}: ${channelFile(channel)} is signed, but ${offered}; the mirror is as it was`);
    const held = await readHeld(mirror, channel);
    const decision = decideChannel(offered, { channel, repository: client.repoName, now: new Date() }, held);
    if (decision.action === "refuse") throw new Failure(`channel ${channel}: ${decision.problem}; the mirror is as it was${held ? ` (${channel} -> ${held.tag}, serial ${held.serial})` : ""}`);
    say(`channel ${channel}: serial ${offered.serial} names ${offered.tag}, signed by ${signed.signer} (key ${signed.fingerprint}), expires ${offered.expires}`);
    if (decision.action === "up-to-date" && (await pointedTag(mirror, channel)) === offered.tag) {
      say(`${join(mirror, channel)} is on ${offered.tag} already (serial ${offered.serial}): nothing to do`);
      return;
    }

    // 4. The release, verified whole by verify-release; it moves the pointer only if every check passed.
    // The downgrade is allowed here: the signed serial is what names it (a rollback by promotion).
    const verifyArgs = [
      "--server", client.options.server, "--repo", client.repoName, "--tag", offered.tag,
      "--download", mirror, "--pointer", channel, "--keep", String(keep), "--allow-downgrade",
      "--statement-sha256", offered.statement.sha256,
      ...(releaseFingerprint ? ["--signer-fingerprint", releaseFingerprint] : ["--allowed-signers", allowedSigners]),
      ...(flags["require-countersignature"] ? ["--require-countersignature"] : []),
      ...(server.tokenFile ? ["--token-file", server.tokenFile] : []),
      ...(flags["boot-root"] ? ["--boot-root", flags["boot-root"] as string] : []),
      ...(server.insecureHttp ? ["--insecure-http"] : []),
    ];
    const child = Bun.spawn([process.execPath, VERIFY_RELEASE, ...verifyArgs], { stdin: "ignore", stdout: "inherit", stderr: "inherit" });
    // Interrupted: verify-release removes its staging directory; the pointer has not moved.
    const forget = onInterrupt(async () => {
      child.kill("SIGINT");
      await child.exited;
    });
    const code = await child.exited;
    forget();
    if (code !== 0) throw new Failure(`channel ${channel}: release ${offered.tag} did not verify (verify-release exit ${code}); ${join(mirror, channel)} is as it was`);

    // 5. The floor for the next statement.
    await writeHeld(mirror, channel, bytes, signature);
    say(`mirror ${mirror}: ${channel} -> releases/${offered.tag} (serial ${offered.serial})`);
  };

  if (watch === undefined) return syncOnce();
  for (;;) {
    await syncOnce().catch((error) => say(`sync failed: ${error instanceof Error ? error.message : String(error)}; trying again in ${watch} s`));
    await Bun.sleep(Number(watch) * 1000);
  }
});
