# Bounded waits for the NixOS test scripts of nix/boot-tests.nix and nix/forgejo-boot-test.nix,
# included in each script after its BOOT_SECONDS and COMMAND_SECONDS. Why each exists: the
# comment above `helpers` in nix/boot-tests.nix (test driver @ 019697db).
import re
import threading
import time


def within(seconds, what, action):
    """Runs a driver call that has no bound of its own; fails after `seconds`."""
    failure = []

    def run():
        try:
            action()
        except BaseException as e:
            failure.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise Exception(f"{what}: not done after {seconds} s")
    if failure:
        raise failure[0]

def console_tail(machine, lines=40):
    return "\n".join(machine.get_console_log().splitlines()[-lines:])

def console_mark(machine):
    """Where the console log ends now: wait_for_console(since=) ignores what came before."""
    return len(machine.get_console_log())

def wait_for_console(machine, regex, timeout, since=0):
    """The first console match of `regex` after offset `since`, within `timeout` seconds."""
    pattern = re.compile(regex)
    deadline = time.monotonic() + timeout
    while True:
        match = pattern.search(machine.get_console_log(), since)
        if match:
            return match
        if time.monotonic() >= deadline:
            raise Exception(
                f"{machine.name}: no console line matching {regex!r} within {timeout} s; the last lines:\n"
                + console_tail(machine)
            )
        time.sleep(1)

def boot(machine, allow_reboot=False):
    """Power on, then wait (bounded) for the test driver's root shell."""
    within(60, f"{machine.name}: QEMU start", lambda: machine.start(allow_reboot=allow_reboot))
    within(BOOT_SECONDS, f"{machine.name}: root shell after power-on", machine.connect)

def reconnect_after_reboot(machine):
    machine.connected = False
    within(BOOT_SECONDS, f"{machine.name}: root shell after the reboot", machine.connect)

def power_off(machine):
    within(COMMAND_SECONDS, f"{machine.name}: power off", machine.shutdown)
