/**
 * The broker <-> machine format has one definition in code (scripts/lib/broker/runner-env.ts);
 * the page operators read (docs/boot-broker.md) and the machine's end (nix/runner-secret.sh)
 * must use the same names, and what the broker writes must be what the machine can parse.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BOOT_ID_HEADER, RUNNER_ENV_KEYS, renderRunnerEnv, type RunnerEnv } from "../scripts/lib/broker/runner-env.ts";
import { ROOT } from "./support/run.ts";

const page = readFileSync(join(ROOT, "docs", "boot-broker.md"), "utf8");
const script = readFileSync(join(ROOT, "nix", "runner-secret.sh"), "utf8");
const MINTED: RunnerEnv = {
  kind: "minted", url: "https://forgejo.example.org", name: "rack1-node3-2f1c9e2a-4d0b-4c43-9f0e-5f3b1f2d8c11", mode: "host", labels: ["nix-host-one-job"],
  uuid: "d4637a60-7fea-4075-a81c-7e4ae01bdf0d", token: "e1f3d26e034687a2b6856c4c6c3d87a469ff3bea", registrationId: 5, ephemeral: true,
};

test("the page's runner.env examples are exactly what the broker writes, and name every key", () => {
  const fenced = [...page.matchAll(/```\n((?:FORGEJO_[A-Z_]+=.*\n)+)```/g)].map((m) => m[1]!);
  expect(fenced).toHaveLength(2);
  expect(fenced[0]).toBe(renderRunnerEnv(MINTED));
  expect(fenced[1]).toBe(
    renderRunnerEnv({ kind: "long-lived", url: MINTED.url, name: "rack1-node3", mode: "host", labels: MINTED.labels, secret: "7c31591e8b67225a116d4a4519ea8e507e08f71f" }),
  );
  for (const key of Object.values(RUNNER_ENV_KEYS)) expect(fenced.join("")).toContain(`${key}=`);
  expect(page).toContain(`${BOOT_ID_HEADER}: `);
});

test("a value that would add a line of its own is refused, naming the key and never the value", () => {
  expect(() => renderRunnerEnv({ ...MINTED, token: `${MINTED.token}\nFORGEJO_URL=https://evil.example` })).toThrow("runner.env: FORGEJO_RUNNER_TOKEN has an unexpected form");
  expect(() => renderRunnerEnv({ ...MINTED, uuid: "not-a-uuid" })).toThrow(/FORGEJO_RUNNER_UUID/);
  let message = "";
  try {
    renderRunnerEnv({ ...MINTED, token: "zz" + MINTED.token.slice(2) });
  } catch (error) {
    message = (error as Error).message;
  }
  expect(message).toContain("FORGEJO_RUNNER_TOKEN");
  expect(message).not.toContain(MINTED.token.slice(2));
});

// The machine half of issue 19 (nix/runner-secret.sh reading uuid+token and sending the boot id)
// comes from another branch; once it is in the tree, it must use these names.
test.skipIf(!script.includes(BOOT_ID_HEADER))("nix/runner-secret.sh reads every key the broker writes and sends the boot id header", () => {
  for (const key of Object.values(RUNNER_ENV_KEYS).filter((k) => k !== RUNNER_ENV_KEYS.labels)) expect(script).toContain(`${key}=`);
  expect(script).toContain(`header = \\"${BOOT_ID_HEADER}: `);
});
