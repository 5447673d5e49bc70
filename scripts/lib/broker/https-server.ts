/**
 * The broker's HTTPS endpoint (Bun.serve with TLS): GET /v1/machines/<MAC>/runner.env from a
 * booting machine. A request is served only when the MAC names a declared machine AND the TCP
 * peer address is that machine's address AND it carries a boot id: nothing is served on the
 * strength of the URL alone (MACs are easy to guess). Every request gets one decision-log line.
 *
 * The address is the TCP peer's, never a header: a reverse proxy in front of the broker would
 * make every machine look like the proxy, so a proxy is not supported. Bun's TLS terminates here.
 */
import type { Server } from "bun";
import type { BrokerConfig, Machine } from "./config.ts";
import { normalMac } from "./config.ts";
import type { DecisionLog } from "./decision-log.ts";
import type { Minter } from "./minter.ts";
import type { RateLimit } from "./rate-limit.ts";
import { BOOT_ID, BOOT_ID_HEADER, MACHINE_PATH, renderRunnerEnv } from "./runner-env.ts";

export interface BrokerServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** "::ffff:10.0.0.5" (an IPv4 peer on a dual-stack socket) is 10.0.0.5. */
export const peerAddress = (address: string) => address.toLowerCase().replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");

export function startBrokerServer(config: BrokerConfig, minter: Minter, limit: RateLimit, log: DecisionLog): BrokerServer {
  const byMac = new Map<string, Machine>(config.machines.map((m) => [m.mac, m]));

  const answer = (status: number, text: string, headers: Record<string, string> = {}) =>
    new Response(text.endsWith("\n") ? text : `${text}\n`, { status, headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...headers } });

  async function handle(req: Request, server: Server<undefined>): Promise<Response> {
    const started = performance.now();
    const source = peerAddress(server.requestIP(req)?.address ?? "");
    const path = new URL(req.url).pathname;
    const refuse = (status: number, reason: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) => {
      log.write({ event: "refused", source, status, reason, ...extra, latencyMs: Math.round(performance.now() - started) });
      return answer(status, reason, headers);
    };

    const route = MACHINE_PATH.exec(path);
    if (!route) return refuse(404, "no such path; machines ask for /v1/machines/<MAC>/runner.env");
    if (req.method !== "GET") return refuse(405, "only GET", {}, { allow: "GET" });
    const rawMac = decodeURIComponent(route[1]!);
    const machine = /^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$/i.test(rawMac) ? byMac.get(normalMac(rawMac)) : undefined;
    // The MAC is logged only once it names a declared machine: anything else is the caller's text.
    if (!machine) return refuse(404, "no machine with this MAC address is declared");
    const who = { machine: machine.name, mac: machine.mac, mode: machine.mode };
    if (source !== machine.address) return refuse(403, "this machine's credential is served only to its own address", who);
    const boot = req.headers.get(BOOT_ID_HEADER) ?? "";
    if (!BOOT_ID.test(boot)) return refuse(400, `the ${BOOT_ID_HEADER} header must hold this boot's id (/proc/sys/kernel/random/boot_id)`, who);
    const wait = limit.take(machine.name);
    if (wait > 0) return refuse(429, `too many requests for this machine; retry in ${wait} s`, { ...who, boot }, { "retry-after": String(wait) });

    const outcome = await minter.serve(machine, boot, source);
    if (outcome.kind === "refused") {
      return refuse(outcome.status, outcome.reason, { ...who, boot }, outcome.retryAfter ? { "retry-after": String(outcome.retryAfter) } : {});
    }
    const body = renderRunnerEnv(outcome.env);
    log.write({
      event: "served", source, ...who, boot, status: 200,
      credential: outcome.env.kind, registration: outcome.registration, name: outcome.env.name,
      latencyMs: Math.round(performance.now() - started),
    });
    return answer(200, body);
  }

  const server = Bun.serve({
    hostname: config.listen.host,
    port: config.listen.port,
    tls: { cert: config.tls.cert, key: config.tls.key },
    fetch: (req, srv) =>
      handle(req, srv).catch((error) => {
        // A bug, not a decision: the machine retries; the line names no credential (none was served).
        log.write({ event: "error", reason: (error as Error).message, status: 500 });
        return answer(500, "internal error");
      }),
  });
  return {
    url: `https://${config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host}:${server.port}`,
    port: server.port!,
    stop: async () => {
      await server.stop(true);
    },
  };
}
