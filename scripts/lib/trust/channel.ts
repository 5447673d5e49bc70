/**
 * Signed channels: a maintainer promotes a release to a channel (stable, testing) with a signed
 * channel statement, and a mirror follows the channel, not Forgejo's `latest` (a pointer the
 * server moves as it likes). The statement names the channel, the repository, a serial that
 * only grows, an expiry, the tag, and the SHA-256 of that release's provenance statement, so:
 *   - a server cannot move a channel: it cannot sign one (own namespace, maintainer key only);
 *   - it cannot roll one back by replaying an older statement: the mirror remembers the serial
 *     it holds and refuses a lower one, or the same one naming something else;
 *   - it cannot freeze one by serving the same statement for ever: it expires;
 *   - it cannot swap the release under the tag: the provenance statement's digest is named.
 * A rollback is a new statement for the older tag under the next serial: explicit and signed.
 *
 * Where it lives: assets <channel>.json and <channel>.json.sig of a release tagged `channels`
 * (a prerelease, so Forgejo's `latest` never names it), uploaded by scripts/promote.ts. Not on
 * the promoted release itself: verify-release refuses files beyond the manifest's, a release's
 * assets are the CI's to write, and a channel must outlive any one release.
 */
import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "../cli/errors.ts";
import { passed, problemsFound, type Check } from "./checklist.ts";
import { STATEMENT_FILE } from "./provenance.ts";
import type { ReleaseUnderCheck } from "./release-checks.ts";
import { tagProblem } from "./tags.ts";

/** The namespace channel statements are signed in: a CI provenance signature never counts here. */
export const CHANNEL_NAMESPACE = "runner-images-channel";
/** The release (and its git tag) whose assets are the channel statements. */
export const CHANNELS_TAG = "channels";
export const CHANNEL_TYPE = "https://runner-images.invalid/channel/v1";
export const channelFile = (channel: string) => `${channel}.json`;
export const channelSignatureFile = (channel: string) => `${channel}.json.sig`;
/** Where a mirror keeps the channel statement it follows (its serial is the floor for the next one). */
export const HELD_DIR = "channels";

export interface ChannelStatement {
  _type: typeof CHANNEL_TYPE;
  repository: string;
  channel: string;
  serial: number;
  expires: string;
  tag: string;
  statement: { name: typeof STATEMENT_FILE; sha256: string };
}

const RESERVED = new Set(["current", "releases", HELD_DIR]);

/** A channel or pointer name becomes a file name in the mirror: lowercase letters, digits, dashes. */
export function checkPointerName(name: string, flag = "--pointer"): void {
  if (name === "current" && flag === "--pointer") return;
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(name) || RESERVED.has(name)) {
    throw new UsageError(`${flag} ${JSON.stringify(name)}: a channel is a lowercase name like stable or testing (not current, releases or channels)`);
  }
}

/** The statement verify-release checked is the one a channel statement names. */
export const statementIsNamed = (r: ReleaseUnderCheck, sha256: string): Check => ({
  name: "statement is the one the channel names",
  run() {
    if (!r.documents.statementBytes) return problemsFound([`there is no ${STATEMENT_FILE}, and the channel names one with SHA-256 ${sha256}`]);
    const actual = new Bun.CryptoHasher("sha256").update(r.documents.statementBytes).digest("hex");
    return actual === sha256 ? passed([`SHA-256 ${sha256}`]) : problemsFound([`${STATEMENT_FILE} has SHA-256 ${actual}, the channel statement names ${sha256}: not the release that was promoted`]);
  },
});

export function formatChannelStatement(c: ChannelStatement): Uint8Array {
  return Buffer.from(`${JSON.stringify(c, null, 2)}\n`);
}

/** Parses a channel statement strictly: every field present, typed and within its pattern; else the reason. */
export function parseChannelStatement(bytes: Uint8Array): ChannelStatement | string {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return "it is not JSON";
  }
  const c = value as Partial<ChannelStatement>;
  if (typeof c !== "object" || c === null) return "it is not a JSON object";
  if (c._type !== CHANNEL_TYPE) return `its _type is not ${CHANNEL_TYPE}`;
  if (typeof c.repository !== "string" || !/^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/.test(c.repository)) return "its repository is not owner/name";
  if (typeof c.channel !== "string" || !/^[a-z][a-z0-9-]{0,31}$/.test(c.channel)) return "its channel is not a channel name";
  if (!Number.isSafeInteger(c.serial) || c.serial! < 1) return "its serial is not a whole number from 1";
  if (typeof c.expires !== "string" || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(c.expires) || Number.isNaN(Date.parse(c.expires))) return "its expires is not a UTC time like 2026-12-31T00:00:00Z";
  if (typeof c.tag !== "string" || tagProblem(c.tag)) return "its tag is not a release tag";
  if (typeof c.statement !== "object" || c.statement === null || c.statement.name !== STATEMENT_FILE || !/^[0-9a-f]{64}$/.test(c.statement.sha256 ?? "")) {
    return `its statement is not {"name": "${STATEMENT_FILE}", "sha256": <64 hex digits>}`;
  }
  return c as ChannelStatement;
}

/** What the mirror does with a channel statement that is signed and for this channel. */
export type ChannelDecision = { action: "sync" } | { action: "up-to-date" } | { action: "refuse"; problem: string };

/**
 * The freshness rules, against what the mirror holds (null: it follows nothing yet). `now` is
 * the caller's clock: a mirror whose clock is far behind accepts an expired channel, which the
 * runbook says.
 */
export function decideChannel(offered: ChannelStatement, expect: { channel: string; repository: string; now: Date }, held: ChannelStatement | null): ChannelDecision {
  if (offered.channel !== expect.channel) return { action: "refuse", problem: `the statement is for channel ${offered.channel}, not ${expect.channel}` };
  if (offered.repository !== expect.repository) {
    return { action: "refuse", problem: `the statement is for repository ${offered.repository}, not ${expect.repository}: it was signed for another repository` };
  }
  if (Date.parse(offered.expires) <= expect.now.getTime()) {
    return { action: "refuse", problem: `channel ${offered.channel} expired at ${offered.expires} (serial ${offered.serial}): the server serves a stale channel, or nobody renewed it (promote again)` };
  }
  if (!held) return { action: "sync" };
  const sameTarget = offered.tag === held.tag && offered.statement.sha256 === held.statement.sha256;
  if (offered.serial < held.serial) {
    return { action: "refuse", problem: `serial ${offered.serial} is lower than the ${held.serial} this mirror holds: a replayed, older channel statement` };
  }
  if (offered.serial === held.serial) {
    return sameTarget
      ? { action: "up-to-date" }
      : { action: "refuse", problem: `serial ${offered.serial} is the one this mirror holds, but it names ${offered.tag} (held: ${held.tag}): two statements under one serial` };
  }
  return { action: "sync" };
}

/** The channel statement the mirror follows, or null; a held file that does not parse is a failure, not a fresh start. */
export async function readHeld(mirror: string, channel: string): Promise<ChannelStatement | null> {
  const file = Bun.file(join(mirror, HELD_DIR, channelFile(channel)));
  if (!(await file.exists())) return null;
  const parsed = parseChannelStatement(await file.bytes());
  if (typeof parsed === "string") throw new UsageError(`${file.name} is what this mirror holds for ${channel}, but ${parsed}: restore it or remove it to start over`);
  return parsed;
}

/** Records the accepted statement and its signature, each written beside and renamed over the old. */
export async function writeHeld(mirror: string, channel: string, bytes: Uint8Array, signature: Uint8Array): Promise<void> {
  const dir = join(mirror, HELD_DIR);
  await Bun.write(join(dir, ".keep"), "");
  for (const [name, data] of [[channelSignatureFile(channel), signature], [channelFile(channel), bytes]] as const) {
    const temporary = join(dir, `.${name}.${process.pid}`);
    await writeFile(temporary, data);
    await rename(temporary, join(dir, name));
  }
}
