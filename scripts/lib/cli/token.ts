/**
 * The API token: from --token-file or the environment, never from a flag value (argv is visible
 * to every process on the machine), and registered as a secret at once so no output can show it.
 */
import { readFile } from "node:fs/promises";
import { UsageError } from "./errors.ts";
import { addSecret } from "./log.ts";

/**
 * The token, from --token-file or the environment (FORGEJO_TOKEN, then GITHUB_TOKEN), trimmed.
 * Never from a flag value: argv is visible to every process on the machine. It is registered as
 * a secret at once, so no output can show it.
 */
export async function readToken(
  tokenFile: string | undefined,
  options: { required: boolean },
  env: Record<string, string | undefined> = process.env,
): Promise<string> {
  let token: string;
  if (tokenFile) {
    try {
      token = (await readFile(tokenFile, "utf8")).trim();
    } catch {
      throw new UsageError(`--token-file ${tokenFile} cannot be read`);
    }
  } else {
    token = (env.FORGEJO_TOKEN || env.GITHUB_TOKEN || "").trim();
  }
  if (!token && !options.required) return "";
  if (!token) throw new UsageError("no token: set FORGEJO_TOKEN (CI sets it from the workflow token) or give --token-file");
  if (/\s/.test(token)) throw new UsageError("the token contains white space; is the token file right?");
  addSecret(token);
  return token;
}
