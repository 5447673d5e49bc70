/**
 * What a booting machine asks the broker and what it receives: the one definition of the
 * protocol between scripts/boot-broker.ts and nix/runner-secret.sh (docs/boot-broker.md,
 * "What a machine asks and receives", says the same for people). tests/broker-format.test.ts
 * checks that runner-secret.sh uses these names.
 */

/** The request path: /v1/machines/<MAC>/runner.env, the MAC as iPXE's ${net0/mac:hexhyp} spells it. */
export const MACHINE_PATH = /^\/v1\/machines\/([^/]+)\/runner\.env$/;
export const machinePath = (mac: string) => `/v1/machines/${mac.replaceAll(":", "-")}/runner.env`;

/**
 * The header carrying this boot's id: /proc/sys/kernel/random/boot_id, a UUID the kernel draws
 * anew at every boot. The broker serves one credential per (machine, boot id), once.
 */
export const BOOT_ID_HEADER = "Runner-Boot-Id";
export const BOOT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** runner.env's keys. Exactly one of SECRET (older Forgejo) or UUID + TOKEN (Forgejo >= 15) appears. */
export const RUNNER_ENV_KEYS = {
  url: "FORGEJO_URL",
  name: "FORGEJO_RUNNER_NAME",
  mode: "FORGEJO_RUNNER_MODE",
  labels: "FORGEJO_RUNNER_LABELS",
  /** Forgejo >= 15: the registration minted for this boot. */
  uuid: "FORGEJO_RUNNER_UUID",
  token: "FORGEJO_RUNNER_TOKEN",
  registrationId: "FORGEJO_RUNNER_REGISTRATION_ID",
  ephemeral: "FORGEJO_RUNNER_EPHEMERAL",
  /** Older Forgejo: the operator's long-lived secret (forgejo-cli actions register). */
  secret: "FORGEJO_RUNNER_SECRET",
} as const;

export type Mode = "container" | "host";

interface Common {
  url: string;
  name: string;
  mode: Mode;
  labels: string[];
}
export type RunnerEnv =
  | (Common & { kind: "minted"; uuid: string; token: string; registrationId: number; ephemeral: boolean })
  | (Common & { kind: "long-lived"; secret: string });

const K = RUNNER_ENV_KEYS;

/**
 * The file, KEY=value lines, LF, no quotes. Every value is checked again here, whatever checked
 * it before: a value from Forgejo (uuid, token) or the config that held a newline would let it
 * write a line of its own into the machine's configuration.
 */
export function renderRunnerEnv(env: RunnerEnv): string {
  const lines: [string, string, RegExp][] = [
    [K.url, env.url, /^https?:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[A-Za-z0-9._~/-]*)?$/],
    [K.name, env.name, /^[A-Za-z0-9._-]{1,100}$/],
    [K.mode, env.mode, /^(container|host)$/],
  ];
  if (env.kind === "minted") {
    lines.push(
      [K.uuid, env.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/],
      [K.token, env.token, /^[0-9a-f]{40}$/],
      [K.registrationId, String(env.registrationId), /^[1-9][0-9]*$/],
      [K.ephemeral, env.ephemeral ? "1" : "0", /^[01]$/],
    );
  } else {
    lines.push([K.secret, env.secret, /^[0-9a-fA-F]{40}$/]);
  }
  if (env.labels.length) lines.push([K.labels, env.labels.join(","), /^[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*$/]);
  // Says which key, never the value: the value may be the credential.
  for (const [key, value, shape] of lines) if (!shape.test(value)) throw new Error(`runner.env: ${key} has an unexpected form`);
  return lines.map(([key, value]) => `${key}=${value}\n`).join("");
}
