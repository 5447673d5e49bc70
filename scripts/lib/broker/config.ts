/**
 * The broker's configuration file (JSON, or YAML read by Bun.YAML): which Forgejo, where to
 * listen, and every machine that may ask. All of it is checked before the broker listens, every
 * mistake listed at once with where it is, and the files it names are read then: a bad
 * configuration is an error at start (exit 2), never at a machine's first boot.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { UsageError } from "../cli/errors.ts";
import { isLoopback } from "../forgejo/http.ts";
import type { Mode } from "./runner-env.ts";

export type Level = "repository" | "organization" | "user";

export interface Machine {
  name: string;
  /** Lower case, colon-separated. */
  mac: string;
  /** The TCP source address its requests must come from (IPv4, or IPv6 without brackets). */
  address: string;
  mode: Mode;
  labels: string[];
  /** Older Forgejo only: the operator's long-lived secret for this machine, read at start. */
  legacySecret?: string;
}

export interface BrokerConfig {
  forgejo: {
    /** API root, no trailing slash. */
    url: string;
    /** What the machines' runners are told to connect to (FORGEJO_URL); default `url`. */
    runnerUrl: string;
    owner: string;
    repo: string;
    level: Level;
    token: string;
  };
  listen: { host: string; port: number };
  tls: { cert: string; key: string };
  /** A handed-out registration still unused this long after is deleted, seconds. */
  unusedDeadlineSeconds: number;
  /** How long one machine's request may wait for Forgejo before it is told to retry, seconds. */
  forgejoWaitSeconds: number;
  /** At most this many calls to Forgejo at once, whatever the number of machines booting. */
  maxForgejoCalls: number;
  /** has_pull_requests is re-read for a host-mode request when older than this, seconds. */
  pullRequestCheckSeconds: number;
  rateLimit: { requests: number; perSeconds: number };
  /** JSON-lines decision log: a file, or "-" for stdout (journald under systemd). */
  logFile: string;
  machines: Machine[];
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$/;
const LABEL = /^[A-Za-z0-9._-]{1,64}$/;
const MAC = /^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$/i;
const OWNER_REPO = /^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/;

/** Normalised MAC: lower case with colons (iPXE's hexhyp form uses hyphens). */
export const normalMac = (mac: string) => mac.toLowerCase().replaceAll("-", ":");

/**
 * A path in the configuration. `$CREDENTIALS_DIRECTORY/...` is taken from the environment, so a
 * systemd unit can hand the broker its token and TLS key with LoadCredential= (systemd.exec(5),
 * "Credentials") and the file never names the run-time directory.
 */
export function expandPath(path: string, env: Record<string, string | undefined> = process.env): string {
  const prefix = "$CREDENTIALS_DIRECTORY/";
  if (!path.startsWith(prefix)) return path;
  const dir = env.CREDENTIALS_DIRECTORY;
  if (!dir) throw new Error(`names $CREDENTIALS_DIRECTORY, which is not set (it is set by systemd's LoadCredential=)`);
  return `${dir.replace(/\/$/, "")}/${path.slice(prefix.length)}`;
}

/** Reads and checks the file; throws one UsageError listing every mistake. */
export function loadConfig(file: string, env: Record<string, string | undefined> = process.env): BrokerConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new UsageError(`--config ${file} cannot be read`, "give the path of the broker's configuration file (docs/boot-broker.md shows one)");
  }
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(file) ? Bun.YAML.parse(text) : JSON.parse(text);
  } catch (error) {
    // The parser's message names the line; it holds no secret (secrets live in other files).
    throw new UsageError(`${file} is not valid ${/\.ya?ml$/i.test(file) ? "YAML" : "JSON"}: ${(error as Error).message.split("\n")[0]}`, "docs/boot-broker.md shows a configuration file");
  }
  return checkConfig(raw, file, env);
}

export function checkConfig(raw: unknown, file: string, env: Record<string, string | undefined> = process.env): BrokerConfig {
  const mistakes: string[] = [];
  const wrong = (where: string, what: string) => mistakes.push(`${where}: ${what}`);

  const object = (value: unknown, where: string, keys: string[]): Record<string, unknown> => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      wrong(where, "must be a mapping");
      return {};
    }
    // An unknown key is a typo until proven otherwise: "unusedDeadline" would silently mean the default.
    for (const key of Object.keys(value)) if (!keys.includes(key)) wrong(`${where}.${key}`, `unknown setting (known: ${keys.join(", ")})`);
    return value as Record<string, unknown>;
  };
  const string = (o: Record<string, unknown>, key: string, where: string, fallback?: string): string => {
    const value = o[key];
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== "string" || value === "") {
      wrong(`${where}.${key}`, value === undefined ? "is required" : "must be a non-empty string");
      return "";
    }
    return value;
  };
  const number = (o: Record<string, unknown>, key: string, where: string, fallback: number, min: number, max: number): number => {
    const value = o[key] ?? fallback;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      wrong(`${where}.${key}`, `must be a whole number from ${min} to ${max}`);
      return fallback;
    }
    return value;
  };
  const readSecretFile = (path: string, where: string, shape?: RegExp): string => {
    if (!path) return "";
    let full: string;
    try {
      full = expandPath(path, env);
    } catch (error) {
      wrong(where, (error as Error).message);
      return "";
    }
    if (!full.startsWith("/")) {
      wrong(where, "must be an absolute path (or start with $CREDENTIALS_DIRECTORY/)");
      return "";
    }
    let content: string;
    try {
      content = readFileSync(full, "utf8").trim();
    } catch {
      wrong(where, `${full} cannot be read`);
      return "";
    }
    // Never quote the content: it is a secret.
    if (!content) wrong(where, `${full} is empty`);
    else if (/\s/.test(content) && !content.includes("-----BEGIN")) wrong(where, `${full} holds white space inside the value`);
    else if (shape && !shape.test(content)) wrong(where, `${full} does not hold what it should (${shape.source})`);
    return content;
  };

  const top = object(raw, "(top level)", ["forgejo", "listen", "tls", "credentials", "rateLimit", "log", "machines"]);

  const fj = object(top.forgejo ?? {}, "forgejo", ["url", "runnerUrl", "repository", "level", "tokenFile", "allowInsecureHttp"]);
  const allowHttp = fj.allowInsecureHttp === true;
  const checkUrl = (key: string, fallback?: string) => {
    const value = string(fj, key, "forgejo", fallback).replace(/\/+$/, "");
    if (!value) return "";
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      wrong(`forgejo.${key}`, `${JSON.stringify(value)} is not a URL`);
      return "";
    }
    if (url.protocol !== "https:" && !(url.protocol === "http:" && (allowHttp || isLoopback(url)))) {
      wrong(`forgejo.${key}`, "must be https:// (plain http only on loopback, or with allowInsecureHttp: true on a lab network)");
    }
    if (url.search || url.hash || url.username) wrong(`forgejo.${key}`, "must not hold a query, fragment or user name");
    return value;
  };
  const url = checkUrl("url");
  const runnerUrl = checkUrl("runnerUrl", url || "https://invalid");
  const repository = string(fj, "repository", "forgejo");
  if (repository && !OWNER_REPO.test(repository)) wrong("forgejo.repository", `${JSON.stringify(repository)} is not owner/name`);
  const level = (fj.level ?? "repository") as Level;
  if (!["repository", "organization", "user"].includes(level)) wrong("forgejo.level", "must be repository, organization or user");
  const token = readSecretFile(string(fj, "tokenFile", "forgejo"), "forgejo.tokenFile");

  const listen = object(top.listen ?? {}, "listen", ["host", "port"]);
  const host = string(listen, "host", "listen");
  if (host && !isIP(host)) wrong("listen.host", `${JSON.stringify(host)} is not an IP address (the broker listens on one address, e.g. 0.0.0.0)`);
  const port = number(listen, "port", "listen", 8443, 0, 65535);

  const tls = object(top.tls ?? {}, "tls", ["certFile", "keyFile"]);
  const cert = readSecretFile(string(tls, "certFile", "tls"), "tls.certFile");
  const key = readSecretFile(string(tls, "keyFile", "tls"), "tls.keyFile");
  if (cert && !cert.includes("-----BEGIN CERTIFICATE-----")) wrong("tls.certFile", "is not a PEM certificate");
  if (key && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) wrong("tls.keyFile", "is not a PEM private key");

  const creds = object(top.credentials ?? {}, "credentials", ["unusedDeadlineSeconds", "forgejoWaitSeconds", "maxForgejoCalls", "pullRequestCheckSeconds"]);
  const unusedDeadlineSeconds = number(creds, "unusedDeadlineSeconds", "credentials", 900, 1, 7 * 86400);
  const forgejoWaitSeconds = number(creds, "forgejoWaitSeconds", "credentials", 20, 0, 600);
  const maxForgejoCalls = number(creds, "maxForgejoCalls", "credentials", 8, 1, 256);
  const pullRequestCheckSeconds = number(creds, "pullRequestCheckSeconds", "credentials", 60, 0, 3600);

  const rate = object(top.rateLimit ?? {}, "rateLimit", ["requests", "perSeconds"]);
  const rateLimit = { requests: number(rate, "requests", "rateLimit", 6, 1, 10000), perSeconds: number(rate, "perSeconds", "rateLimit", 600, 1, 86400) };

  const log = object(top.log ?? {}, "log", ["file"]);
  const logFile = string(log, "file", "log", "-");

  const machines: Machine[] = [];
  if (!Array.isArray(top.machines) || top.machines.length === 0) wrong("machines", "must list at least one machine");
  const seen = { name: new Map<string, number>(), mac: new Map<string, number>() };
  for (const [i, entry] of (Array.isArray(top.machines) ? top.machines : []).entries()) {
    const where = `machines[${i}]`;
    const m = object(entry, where, ["name", "mac", "address", "mode", "labels", "legacySecretFile"]);
    const name = string(m, "name", where);
    const label = name ? `${where} (${name})` : where;
    if (name && !NAME.test(name)) wrong(`${label}.name`, "letters, digits, '.', '_' and '-', at most 50, starting with a letter or digit");
    const mac = string(m, "mac", label);
    if (mac && !MAC.test(mac)) wrong(`${label}.mac`, `${JSON.stringify(mac)} is not a MAC address like 52:54:00:12:34:56`);
    const address = string(m, "address", label);
    if (address && !isIP(address)) wrong(`${label}.address`, `${JSON.stringify(address)} is not an IP address (the source address its requests come from)`);
    const mode = (m.mode ?? "container") as Mode;
    if (mode !== "container" && mode !== "host") wrong(`${label}.mode`, "must be container or host");
    const labels = m.labels ?? [];
    if (!Array.isArray(labels) || labels.some((l) => typeof l !== "string" || !LABEL.test(l))) {
      wrong(`${label}.labels`, "must be a list of label names (letters, digits, '.', '_', '-')");
    }
    const legacyPath = m.legacySecretFile === undefined ? "" : string(m, "legacySecretFile", label);
    const legacySecret = legacyPath ? readSecretFile(legacyPath, `${label}.legacySecretFile`, /^[0-9a-fA-F]{40}$/) : undefined;
    for (const [kind, value] of [["name", name], ["mac", mac && normalMac(mac)]] as const) {
      if (!value) continue;
      const first = seen[kind].get(value);
      if (first !== undefined) wrong(`${label}.${kind}`, `the same as machines[${first}]'s`);
      else seen[kind].set(value, i);
    }
    machines.push({ name, mac: normalMac(mac), address: address.toLowerCase(), mode, labels: Array.isArray(labels) ? (labels as string[]) : [], legacySecret });
  }

  if (mistakes.length) {
    throw new UsageError(`${file} has ${mistakes.length === 1 ? "a mistake" : `${mistakes.length} mistakes`}: ${mistakes.join("; ")}`, "docs/boot-broker.md describes every setting");
  }
  const [owner, repo] = repository.split("/") as [string, string];
  return {
    forgejo: { url, runnerUrl, owner, repo, level, token },
    listen: { host, port },
    tls: { cert, key },
    unusedDeadlineSeconds,
    forgejoWaitSeconds,
    maxForgejoCalls,
    pullRequestCheckSeconds,
    rateLimit,
    logFile,
    machines,
  };
}
