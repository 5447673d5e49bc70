/**
 * Boots a release's netboot chain in QEMU the way an operator's machine boots it: the NIC's iPXE
 * ROM (Debian's ipxe-qemu, iPXE 1.0.0+git-20190125, the default ROM of QEMU's e1000) gets the
 * operator's iPXE script as its DHCP boot file; that script sets `cmdline` and chains the
 * release's netboot-x86_64.ipxe from its download URL; the release script loads the kernel and
 * initrd; the fixture's /init reports on the serial console (tests/fixtures/netboot/).
 *
 * Network: QEMU's user network with `restrict=on`, so the guest reaches nothing at all (not the
 * host, not the internet, no DNS), except
 *   - QEMU's own DHCP and TFTP (inside the QEMU process: the boot file is the operator script);
 *   - one `guestfwd` rule per loopback server: 10.0.2.100:<port> in the guest is a connection
 *     to 127.0.0.1:<port> on the host, relayed by `busybox nc` that QEMU starts per connection.
 * Every packet the guest sends therefore ends at QEMU or at a loopback port the test chose
 * (libslirp: udp.c and udp6.c drop all guest UDP under restrict after the DHCP/TFTP checks,
 * tcp_input.c refuses a new connection that matches no guestfwd rule, ip_icmp.c answers echo
 * only for slirp's own addresses; read in utmapp/libslirp of 2020, Debian 12 runs 4.7.0).
 * The relay is a `cmd:` rule (QEMU net/slirp.c, slirp_guestfwd: `cmd:` is slirp_add_exec, one
 * relay process per guest connection), not a `tcp:` chardev rule, which is one host connection
 * opened as QEMU starts and shared by every guest connection. Measured here, the chain from
 * power-on to /init's last line takes about 16 s (bench/netboot.ts).
 *
 * TCG only: /dev/kvm exists on the CI machines but guests reset under it as iPXE starts.
 */
import { readFileSync } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { $ } from "zx/core";
import type { BootFiles } from "./fixture-flake.ts";
import { ROOT } from "./run.ts";

export const QEMU = "qemu-system-x86_64";
const NETBOOT_FIXTURE = join(ROOT, "tests", "fixtures", "netboot");
/** Where tests/fixtures/netboot/fetch-kernel.sh (run by scripts/setup.sh) puts Debian's kernel. */
export const KERNEL_DIR = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "runner-images", "debian-kernel");
/** The guest's name for the host's loopback servers (a guestfwd address). */
export const GUEST_HOST = "10.0.2.100";
/** The boot broker's URL for this VM's runner.env as the operator script writes it (iPXE variable unexpanded). */
export const brokerGuestUrl = (port: number) => `https://${GUEST_HOST}:${port}/v1/machines/\${net0/mac:hexhyp}/runner.env`;
/** The VM's MAC address, and as iPXE's ${net0/mac:hexhyp} spells it in runner.env's name. */
export const GUEST_MAC = "52:54:00:12:34:56";
export const GUEST_MAC_HEXHYP = GUEST_MAC.replaceAll(":", "-");
/** The line the fixture's /init prints last, just before it powers the VM off. */
export const DONE_LINE = "netboot-fixture: done";

/** Why the chain cannot boot on this machine, or null when it can. */
export function qemuMissing(): string | null {
  if (!Bun.which(QEMU)) return `${QEMU} is not installed (bash scripts/setup.sh installs it: Debian's qemu-system-x86 and ipxe-qemu)`;
  return null;
}

async function cachedKernel(): Promise<string | undefined> {
  const kernels = await readdir(join(KERNEL_DIR, "boot")).catch(() => [] as string[]);
  const vmlinuz = kernels.find((name) => name.startsWith("vmlinuz-"));
  return vmlinuz && join(KERNEL_DIR, "boot", vmlinuz);
}

/** Why the bootable fixture cannot be made here, or null when it can. */
export async function bootFilesMissing(): Promise<string | null> {
  if (!(await cachedKernel())) return `no Debian kernel in ${KERNEL_DIR}: run bash scripts/setup.sh (or tests/fixtures/netboot/fetch-kernel.sh alone)`;
  for (const [tool, pkg] of [["busybox", "busybox-static"], ["cpio", "cpio"]]) {
    if (!Bun.which(tool!)) return `${tool} is not installed (Debian: apt install ${pkg})`;
  }
  return null;
}

/**
 * Debian's kernel from the cache and a freshly built fixture initrd, written into `dir`; with
 * `ca`, the guest's curl trusts that CA certificate (the boot broker's, tests/support/broker.ts).
 */
export async function makeBootFiles(dir: string, ca?: string): Promise<BootFiles> {
  const missing = await bootFilesMissing();
  if (missing) throw new Error(missing);
  await mkdir(dir, { recursive: true });
  const initrd = join(dir, "initrd");
  await $({ quiet: true })`${join(NETBOOT_FIXTURE, "make-initrd.sh")} ${KERNEL_DIR} ${initrd} ${ca ?? ""}`;
  return { kernel: (await cachedKernel())!, initrd };
}

/** A loopback URL as the guest must write it (same port, the guestfwd address). */
export function guestUrl(url: string): string {
  const loopback = /^http:\/\/127\.0\.0\.1(?=[:/]|$)/;
  if (!loopback.test(url)) throw new Error(`the guest reaches only http://127.0.0.1 servers, not ${url}`);
  return url.replace(loopback, `http://${GUEST_HOST}`);
}

/** The operator's cmdline: what the VM's kernel command line must end with. */
export const operatorCmdline = (configUrl: string) =>
  // The loopback servers are plain http, so this is the runbook's lab-network case, with its
  // opt-in (nix/runner-secret.sh); console=ttyS0 puts the kernel's messages on the serial console.
  `console=ttyS0 runner.allow_insecure_http=1 runner.config_url=${configUrl}`;

/** The operator's iPXE script, as the runbook's "Boot over the network" writes it. */
export function operatorScript(chainUrl: string, configUrl: string): string {
  return [
    "#!ipxe",
    // The ROM has just configured net0 by DHCP to fetch this script; the runbook's `dhcp` line
    // would only repeat that.
    `set cmdline ${operatorCmdline(configUrl)}`,
    `chain ${chainUrl}`,
    "",
  ].join("\n");
}

export interface BootOptions {
  /** The operator's iPXE script (operatorScript), with guest URLs. */
  script: string;
  /** Host loopback ports the guest may reach at GUEST_HOST. */
  ports: number[];
  /** A scratch directory (QEMU's TFTP root). */
  workDir: string;
  /** Each serial console line as it arrives. */
  onLine?: (line: string) => void;
  /** Kills the VM after this long (default 5 minutes): a hung boot fails instead of hanging. */
  timeoutMs?: number;
  /** Called with the QEMU process once it runs (to stop it on Ctrl-C). */
  started?: (vm: Bun.Subprocess) => void;
}

export interface BootResult {
  /** Everything the VM wrote on its serial console (iPXE, then Linux and /init). */
  serial: string;
  /** The fixture's /init ran to the end and powered off. */
  completed: boolean;
  timedOut: boolean;
}

export async function bootChain(options: BootOptions): Promise<BootResult> {
  const tftp = join(options.workDir, "tftp");
  await mkdir(tftp, { recursive: true });
  await Bun.write(join(tftp, "operator.ipxe"), options.script);
  const forwards = options.ports.map((port) => `guestfwd=tcp:${GUEST_HOST}:${port}-cmd:busybox nc 127.0.0.1 ${port}`);
  const netdev = ["user", "id=net0", "restrict=on", `tftp=${tftp}`, "bootfile=operator.ipxe", ...forwards].join(",");
  // reboot-timeout=0: when the chain fails, the firmware reboots at once instead of waiting at
  // "No bootable device" (QEMU's default tells SeaBIOS never to), and -no-reboot makes that
  // reboot QEMU's exit: a failed boot ends in seconds, not at the timeout (measured here).
  const vm = Bun.spawn(
    [QEMU, "-accel", "tcg", "-m", "512", "-nographic", "-serial", "stdio", "-monitor", "none", "-no-reboot",
      "-netdev", netdev, "-device", `e1000,netdev=net0,mac=${GUEST_MAC}`, "-boot", "n,reboot-timeout=0"],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  options.started?.(vm);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    vm.kill();
  }, options.timeoutMs ?? 300_000);
  let serial = "";
  let pending = "";
  const decoder = new TextDecoder();
  for await (const chunk of vm.stdout) {
    const text = decoder.decode(chunk, { stream: true });
    serial += text;
    pending += text;
    const lines = pending.split(/\r?\n/);
    pending = lines.pop()!;
    for (const line of lines) options.onLine?.(line);
  }
  const stderr = await new Response(vm.stderr).text();
  await vm.exited;
  clearTimeout(timer);
  if (pending) options.onLine?.(pending);
  serial = serial.replace(/\r/g, "");
  if (stderr.trim() && !serial.includes(DONE_LINE)) serial += `\n[qemu] ${stderr.trim()}`;
  return { serial, completed: serial.includes(DONE_LINE), timedOut };
}

/** The kernel command line the fixture's /init printed, or null. */
export function cmdlineSeen(serial: string): string | null {
  return /^netboot-fixture: cmdline: (.*)$/m.exec(serial)?.[1]?.trim() ?? null;
}

/** One request to a loopback file server. */
export interface FileRequest {
  method: string;
  path: string;
  status: number;
}

/** A loopback server for fixed files (the machines' runner.env), recording every request. */
export function serveFiles(files: Record<string, string>) {
  const requests: FileRequest[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      const body = files[path];
      const response = body === undefined ? new Response("not found\n", { status: 404 }) : new Response(body);
      requests.push({ method: req.method, path, status: response.status });
      return response;
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, port: server.port!, requests, stop: () => server.stop(true) };
}
