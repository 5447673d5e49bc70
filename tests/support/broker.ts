/**
 * Runs scripts/boot-broker.ts for tests, the demo and the bench: a throw-away CA and a server
 * certificate for 127.0.0.1 (and 10.0.2.100, the guest's name for it, tests/support/netboot-vm.ts),
 * the token file, the configuration, and the broker as its own process, whose decision log (its
 * stdout) is collected line by line. Machines ask with curl, as runner-secret.sh does, so a test
 * can choose the source address (`--interface 127.0.0.2`: all of 127/8 is loopback on Linux).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { $ } from "zx/core";
import { BOOT_ID_HEADER, machinePath } from "../../scripts/lib/broker/runner-env.ts";
import { ROOT } from "./run.ts";

export interface Tls {
  dir: string;
  ca: string;
  cert: string;
  key: string;
}

/** A CA and a server certificate signed by it (openssl), in a fresh directory. */
export async function makeTls(dir = mkdtempSync(join(tmpdir(), "broker-tls-"))): Promise<Tls> {
  mkdirSync(dir, { recursive: true });
  const q = $({ quiet: true, cwd: dir });
  await q`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca`;
  await q`openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj /CN=broker`;
  writeFileSync(join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1,IP:10.0.2.100\n");
  await q`openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext`;
  return { dir, ca: join(dir, "ca.pem"), cert: join(dir, "server.pem"), key: join(dir, "server.key") };
}

/**
 * The directory systemd fills from nixosModules.boot-broker's LoadCredential= (ids forgejo-token,
 * tls-cert, tls-key, and any `extra`), for checking the module's configuration file with the
 * broker's own parser as $CREDENTIALS_DIRECTORY.
 */
export async function makeCredentialsDir(dir: string, extra: Record<string, string> = {}): Promise<string> {
  const tls = await makeTls(join(dir, "tls"));
  const creds = join(dir, "credentials");
  mkdirSync(creds, { recursive: true });
  const files = { "forgejo-token": "a-token\n", "tls-cert": await Bun.file(tls.cert).text(), "tls-key": await Bun.file(tls.key).text(), ...extra };
  for (const [id, text] of Object.entries(files)) writeFileSync(join(creds, id), text);
  return creds;
}

export interface MachineSpec {
  name: string;
  mac: string;
  address: string;
  mode?: "container" | "host";
  labels?: string[];
  legacySecretFile?: string;
}

export interface BrokerRun {
  url: string;
  port: number;
  /** The decision log so far, one parsed object per line. */
  log(): Record<string, unknown>[];
  /** Everything it wrote to stdout and stderr (to search for secrets). */
  output(): string;
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  exited: Promise<number>;
  stop(): Promise<void>;
}

export interface BrokerSetup {
  forgejoUrl: string;
  tls: Tls;
  machines: MachineSpec[];
  token?: string;
  /** Extra top-level settings (credentials, rateLimit, ...), merged over the defaults. */
  extra?: Record<string, unknown>;
  flags?: string[];
  env?: Record<string, string>;
}

/** Writes token file and configuration into `dir`; returns the configuration's path. */
export function writeConfig(dir: string, setup: BrokerSetup, format: "json" | "yaml" = "json"): string {
  writeFileSync(join(dir, "forgejo-token"), `${setup.token ?? "owner-token"}\n`, { mode: 0o600 });
  const config = {
    forgejo: { url: setup.forgejoUrl, repository: "ops/runner-images", tokenFile: join(dir, "forgejo-token") },
    listen: { host: "127.0.0.1", port: 0 },
    tls: { certFile: setup.tls.cert, keyFile: setup.tls.key },
    machines: setup.machines,
    ...setup.extra,
  };
  const path = join(dir, `broker.${format}`);
  writeFileSync(path, format === "json" ? JSON.stringify(config, null, 2) : Bun.YAML.stringify(config, null, 2));
  return path;
}

/** Starts the broker and waits until it listens (or exits: then `exited` says how). */
export async function startBroker(setup: BrokerSetup, dir = mkdtempSync(join(tmpdir(), "broker-"))): Promise<BrokerRun> {
  mkdirSync(dir, { recursive: true });
  const config = writeConfig(dir, setup);
  const proc = Bun.spawn(["bun", join(ROOT, "scripts", "boot-broker.ts"), "--config", config, ...(setup.flags ?? [])], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, BROKER_FORGEJO_WAIT: "20", ...setup.env },
  });
  let stdout = "";
  let stderr = "";
  let listening: (port: number) => void;
  const ready = new Promise<number>((resolve) => (listening = resolve));
  const read = async (stream: ReadableStream<Uint8Array>, sink: (text: string) => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) sink(decoder.decode(chunk, { stream: true }));
  };
  const reading = Promise.all([
    read(proc.stdout, (t) => (stdout += t)),
    read(proc.stderr, (t) => {
      stderr += t;
      const m = /serving \d+ machines on https:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) listening(Number(m[1]));
    }),
  ]);
  const exited = proc.exited.then(async (code) => {
    await reading;
    return code;
  });
  const port = await Promise.race([ready, exited.then(() => 0)]);
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    log: () => stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
    output: () => stdout + stderr,
    proc,
    exited,
    async stop() {
      proc.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Answer {
  status: number;
  body: string;
  headers: string;
}

/** One machine's request, as runner-secret.sh makes it (curl), from `source`. */
export async function ask(broker: { url: string }, tls: Tls, mac: string, boot: string | null, source = "127.0.0.1"): Promise<Answer> {
  const dir = mkdtempSync(join(tmpdir(), "broker-ask-"));
  try {
    const args = ["curl", "-sS", "--cacert", tls.ca, "--interface", source, "-o", join(dir, "body"), "-D", join(dir, "headers"), "-w", "%{http_code}"];
    if (boot !== null) args.push("-H", `${BOOT_ID_HEADER}: ${boot}`);
    const curl = Bun.spawn([...args, `${broker.url}${machinePath(mac)}`], { stdout: "pipe", stderr: "pipe" });
    const code = (await new Response(curl.stdout).text()).trim();
    await curl.exited;
    return { status: Number(code), body: await Bun.file(join(dir, "body")).text().catch(() => ""), headers: await Bun.file(join(dir, "headers")).text().catch(() => "") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** runner.env as a record. */
export const parseEnv = (text: string) => Object.fromEntries(text.split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));

export const bootId = () => crypto.randomUUID();
