#!/usr/bin/env bun
/**
 * promote: a maintainer moves a channel (stable, testing) to a release, with a signed channel
 * statement (scripts/lib/trust/channel.ts says what it names and why). Mirrors that follow the
 * channel (sync-mirror.ts) move to the release at their next sync. A rollback is the same
 * command with the older tag: it gets the next serial, so it is never mistaken for a replay.
 *
 * The steps, in order:
 *   1. check the maintainer's key file and a write token, before anything is downloaded;
 *   2. find the release to promote and read its provenance statement (its SHA-256 is what the
 *      channel names; sync-mirror verifies the whole release against it);
 *   3. the serial: the channel's current one + 1 (or --serial, which must be higher);
 *   4. write and sign the channel statement (namespace runner-images-channel);
 *   5. upload it to the `channels` release (made, as a prerelease, if absent), new files first
 *      under temporary names, then swapped in.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Failure, UsageError } from "./lib/cli/errors.ts";
import { onInterrupt, runMain } from "./lib/cli/run-main.ts";
import { parseCommandLine, type CommandSpec } from "./lib/cli/command-line.ts";
import { say } from "./lib/cli/log.ts";
import { SERVER_FLAGS } from "./lib/cli/server-flags.ts";
import { findRelease } from "./lib/forgejo/find-release.ts";
import { uploadAsset } from "./lib/forgejo/upload.ts";
import {
  CHANNELS_TAG, CHANNEL_NAMESPACE, CHANNEL_TYPE, channelFile, channelSignatureFile, checkPointerName, formatChannelStatement, parseChannelStatement, type ChannelStatement,
} from "./lib/trust/channel.ts";
import { STATEMENT_FILE } from "./lib/trust/provenance.ts";
import { sign, signingKey } from "./lib/trust/signing.ts";
import { tagProblem } from "./lib/trust/tags.ts";

const COMMAND: CommandSpec = {
  name: "promote.ts",
  summary: "Move a channel (stable, testing) to a release with a signed channel statement; mirrors following the channel move at their next sync",
  flags: [
    { name: "channel", value: "name", description: "Required: the channel, e.g. stable or testing" },
    { name: "tag", value: "tag", description: "Required: the release the channel names from now on (an older one: a rollback)" },
    ...SERVER_FLAGS,
    { name: "signing-key", value: "file", description: "Required: the maintainer's private key file (its public half in allowed_signers with namespaces=\"runner-images-channel\")" },
    { name: "serial", value: "n", description: "The statement's serial (default: the channel's current serial + 1); must be higher than the current one" },
    { name: "expires-in", value: "days", description: "How long mirrors accept the statement (default 30): promote again before then" },
    { name: "token-file", value: "file", description: "A token that may edit releases (default: FORGEJO_TOKEN/GITHUB_TOKEN)" },
    { name: "debug", description: "Log every request and show stack traces" },
  ],
  sections: [
    { title: "Exit codes", body: "  0 promoted, 1 failed (the channel is as it was, or the old statement with the new one beside it under a temporary name), 2 bad flags or input" },
    {
      title: "Examples",
      body: [
        "  bun scripts/promote.ts --server https://forge.example --repo ops/runner-images --channel stable --tag boot-v1.2.0 \\",
        "      --signing-key ~/.ssh/runner-images-maintainer",
      ].join("\n"),
    },
  ],
};

await runMain(async () => {
  const args = parseCommandLine(COMMAND, process.argv.slice(2));
  if (!args) return;
  const flags = args.flags;
  const channel = flags.channel as string | undefined;
  const tag = flags.tag as string | undefined;
  if (!channel || !tag) throw new UsageError("give --channel <name> and --tag <tag>");
  checkPointerName(channel, "--channel");
  const problem = tagProblem(tag);
  if (problem) throw new UsageError(`--tag ${tag}: ${problem}`);
  const expiresIn = (flags["expires-in"] as string | undefined) ?? "30";
  if (!/^\d{1,3}$/.test(expiresIn) || Number(expiresIn) < 1) throw new UsageError(`--expires-in ${expiresIn}: give whole days, 1 to 999`);
  const serialFlag = flags.serial as string | undefined;
  if (serialFlag !== undefined && !/^[1-9]\d{0,14}$/.test(serialFlag)) throw new UsageError(`--serial ${serialFlag}: give a whole number from 1`);

  // 1. The maintainer's key (a file: a channel is never promoted by CI) and a token that may write.
  const keyFile = flags["signing-key"] as string | undefined;
  if (!keyFile) throw new UsageError("--signing-key <file>: the maintainer's key signs the channel statement (CI's key is not allowed to)");
  const key = await signingKey(keyFile, {});
  const server = { server: flags.server as string | undefined, repo: flags.repo as string | undefined, insecureHttp: flags["insecure-http"] === true, tokenFile: flags["token-file"] as string | undefined, writing: true };

  // 2. The release, and the digest of its statement.
  const { client, release } = await findRelease(server, tag);
  if (!client.options.token) throw new UsageError("promote uploads to the channels release: give a token that may edit releases (FORGEJO_TOKEN or --token-file)");
  const statementAsset = release.assets.find((a) => a.name === STATEMENT_FILE);
  if (!statementAsset) throw new Failure(`release ${tag} has no ${STATEMENT_FILE}: only a signed release can be promoted`);
  const statementBytes = await client.downloadSmall(statementAsset.browser_download_url, `downloading ${STATEMENT_FILE} of ${tag}`);
  const sha256 = new Bun.CryptoHasher("sha256").update(statementBytes).digest("hex");
  say(`${tag}: ${STATEMENT_FILE} has SHA-256 ${sha256} (verify-release checks the release it names; run it before promoting)`);

  // 3. The serial.
  let channels = await client.releaseByTag(CHANNELS_TAG);
  const currentAsset = channels?.assets.find((a) => a.name === channelFile(channel));
  let current: ChannelStatement | null = null;
  if (currentAsset) {
    const parsed = parseChannelStatement(await client.downloadSmall(currentAsset.browser_download_url, `downloading ${channelFile(channel)}`));
    if (typeof parsed === "string") say(`note: the current ${channelFile(channel)} on the server does not parse (${parsed}); give --serial higher than the one mirrors hold`);
    else current = parsed;
  }
  const serial = serialFlag ? Number(serialFlag) : (current?.serial ?? 0) + 1;
  if (current && serial <= current.serial) throw new UsageError(`--serial ${serial}: channel ${channel} is at serial ${current.serial} already; mirrors refuse anything not higher`);

  // 4. The statement, signed in the channel namespace.
  const expires = new Date(Date.now() + Number(expiresIn) * 86_400_000).toISOString().replace(/\.\d+Z$/, "Z");
  const statement: ChannelStatement = {
    _type: CHANNEL_TYPE, repository: client.repoName, channel, serial, expires, tag, statement: { name: STATEMENT_FILE, sha256 },
  };
  const bytes = formatChannelStatement(statement);
  const signature = await sign(bytes, key!, CHANNEL_NAMESPACE);

  // 5. Upload: the new files beside the old ones under temporary names, then swapped in. A
  // mirror syncing in between sees the old statement, nothing, or a pair that does not verify:
  // each leaves it as it was, and the next sync picks the new one up.
  if (!channels) {
    const commit = (await client.tag(tag))?.commit.sha;
    channels = await client.createRelease({
      tag_name: CHANNELS_TAG, target_commitish: commit, name: "channels", prerelease: true,
      body: "Signed channel statements (scripts/promote.ts); mirrors follow them with scripts/sync-mirror.ts.",
    });
    if (!channels) channels = await client.releaseByTag(CHANNELS_TAG);
    if (!channels) throw new Failure(`could not create or find the ${CHANNELS_TAG} release`);
  }
  const scratch = await mkdtemp(join(tmpdir(), "runner-images-promote-"));
  const forget = onInterrupt(() => rm(scratch, { recursive: true, force: true }));
  try {
    const stamp = `${Date.now()}`;
    for (const [name, data] of [[channelSignatureFile(channel), signature], [channelFile(channel), bytes]] as const) {
      const path = join(scratch, name);
      await writeFile(path, data);
      const uploaded = await uploadAsset(client, channels.id, `${name}.${stamp}.new`, { name, path, size: data.byteLength, sha256: "" });
      for (const old of (await client.assets(channels.id)).filter((a) => a.name === name)) await client.deleteAsset(channels.id, old.id, name);
      await client.renameAsset(channels.id, uploaded.id, name);
    }
  } finally {
    forget();
    await rm(scratch, { recursive: true, force: true });
  }
  say(`promoted ${tag} to channel ${channel}: serial ${serial}, expires ${expires}; mirrors move at their next sync-mirror --channel ${channel}`);
});
