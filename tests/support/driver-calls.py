"""Reads NixOS test scripts (JSON {name: python source} on stdin) and prints, as JSON, every call
to the test driver that can wait for ever (tests/boot-test-waits.test.ts).

The rules come from the driver itself, nixpkgs nixos/lib/test-driver/src/test_driver/machine/
__init__.py @ 019697db:
  - succeed()/fail() default to timeout=None (no bound); execute() and the wait_* methods
    default to 900 s or none: every such call must say its timeout;
  - execute() returns at EOF of the command's stdout: a command that leaves a process behind
    (setsid, nohup, a background `&`) must redirect its stdin, stdout and stderr;
  - wait_for_console_text() reads one console line per second, or waits for ever;
    connect(), shutdown(), wait_for_shutdown(), start() and crash() have no bound: they may
    only run inside the scripts' `within(seconds, what, action)`.
"""

import ast
import json
import re
import sys

NEEDS_TIMEOUT = {
    "succeed",
    "fail",
    "execute",
    "wait_for_unit",
    "wait_until_succeeds",
    "wait_until_fails",
    "wait_for_file",
    "wait_for_open_port",
    "wait_for_closed_port",
    "wait_for_open_unix_socket",
    "wait_until_tty_matches",
    "wait_for_text",
    "wait_for_qmp_event",
    "wait_for_console",
}
UNBOUNDED = {"connect", "shutdown", "wait_for_shutdown", "start", "crash", "reboot", "wait_for_x", "wait_for_window"}
NEVER = {"wait_for_console_text"}
RUNS_A_COMMAND = {"succeed", "fail", "execute", "wait_until_succeeds", "wait_until_fails"}

DETACHES = re.compile(r"\bsetsid\b|\bnohup\b|\bdisown\b|(?<![&>|])&(?![&>])\s*($|[;)]|\w)")
STDIN = re.compile(r"<\s*/dev/null")
STDOUT_AND_STDERR = re.compile(r"&>\s*\S|>\s*\S+\s+2>&1|>\s*\S+\s+2>\s*\S")


def call_name(node):
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    if isinstance(node.func, ast.Name):
        return node.func.id
    return None


def text_of(node):
    """A command argument as text: literals, f-strings (holes as {}), helpers' first arguments."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return text_of(node.left) + text_of(node.right)
    if isinstance(node, ast.Call) and node.args:
        return text_of(node.args[0])
    return ""


def check(name, source):
    problems = []
    tree = ast.parse(source, filename=name)
    inside_within = set()
    for node in ast.walk(tree):
        # the calls passed to within(), and within's own body (its thread's start())
        if (isinstance(node, ast.Call) and call_name(node) == "within") or (
            isinstance(node, ast.FunctionDef) and node.name == "within"
        ):
            for child in ast.walk(node):
                inside_within.add(id(child))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        method = node.func.attr
        where = f"{name}:{node.lineno}"
        keywords = {k.arg: k.value for k in node.keywords}
        if method in NEVER:
            problems.append({"where": where, "rule": "console", "call": method})
        if method in UNBOUNDED and id(node) not in inside_within:
            problems.append({"where": where, "rule": "unbounded", "call": method})
        if method in NEEDS_TIMEOUT:
            timeout = keywords.get("timeout")
            if timeout is None or (isinstance(timeout, ast.Constant) and timeout.value is None):
                problems.append({"where": where, "rule": "timeout", "call": method})
        if method in RUNS_A_COMMAND and node.args:
            command = text_of(node.args[0])
            if keywords.get("check_output") is not None:
                continue  # check_output=False: the driver does not read the output at all
            if DETACHES.search(command) and not (STDIN.search(command) and STDOUT_AND_STDERR.search(command)):
                problems.append({"where": where, "rule": "detached", "call": method, "command": command})
    return problems


scripts = json.load(sys.stdin)
print(json.dumps({name: check(name, source) for name, source in sorted(scripts.items())}))
