"""The runtime manifest: a service process is refused, with an audit line, what it may not do."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_SCRIPT = textwrap.dedent(
    """
    import json, logging, socket, subprocess, sys
    from teaclave.assurance import capabilities, runtime

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    service, target, port, state = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    runtime.install(service, writable=[state])
    outcomes = {}

    def attempt(name, action):
        try:
            action()
            outcomes[name] = "allowed"
        except runtime.CapabilityRefused as exc:
            outcomes[name] = str(exc)
        except (OSError, SyntaxError) as exc:  # allowed, and failed for another reason
            outcomes[name] = type(exc).__name__

    attempt("write", lambda: open(target, "w").close())
    attempt("connect", lambda: socket.create_connection(("127.0.0.1", port), timeout=1))
    attempt("spawn", lambda: subprocess.run(["true"], check=True))
    attempt("read code", lambda: open(capabilities.__file__, "rb").close())
    attempt("import", lambda: __import__("xml.dom.minidom"))
    attempt("state", lambda: open(state + "/entry", "w").close())
    attempt("syntax error", lambda: compile("def", "<function>", "exec"))
    print(json.dumps(outcomes))
    """
)


def _run(service: str, tmp_path: Path, port: int) -> tuple[dict[str, str], str]:
    state = tmp_path / "state"
    state.mkdir()
    args = [str(tmp_path / "x"), str(port), str(state)]  # nothing listens on port
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, service, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    return json.loads(done.stdout), done.stderr


def test_access_control_opens_no_files_sockets_or_processes(tmp_path: Path, free_port: int) -> None:
    outcomes, log = _run("access_control", tmp_path, free_port)
    target = tmp_path / "x"
    assert outcomes == {
        "write": f"runtime manifest: service access_control may not use fs (open '{target}')",
        "connect": "runtime manifest: service access_control may not use net "
        "(socket.getaddrinfo '127.0.0.1')",
        "spawn": "runtime manifest: service access_control may not use proc "
        "(subprocess.Popen 'true')",
        "read code": "allowed",
        "import": "allowed",
        "state": "allowed",
        "syntax error": "SyntaxError",  # its source line is looked up, not refused
    }
    assert not target.exists()
    refused = [
        json.loads(line.removeprefix("runtime manifest: "))
        for line in log.splitlines()
        if line.startswith("runtime manifest: {")
    ]
    assert [(r["capability"], r["event"]) for r in refused] == [
        ("fs", "open"),
        ("net", "socket.getaddrinfo"),
        ("proc", "subprocess.Popen"),
    ]
    assert {(r["service"], r["decision"]) for r in refused} == {("access_control", "refused")}


def test_a_granted_capability_passes(tmp_path: Path, free_port: int) -> None:
    outcomes, _ = _run("execution", tmp_path, free_port)  # net, proc, ffi
    assert outcomes["spawn"] == "allowed"
    assert outcomes["connect"] == "ConnectionRefusedError"  # not the hook: nothing listens
    assert outcomes["write"].startswith("runtime manifest: service execution may not use fs")


@pytest.mark.parametrize("service", ["storage", "frontend", "nobody"])
def test_every_service_is_listed_and_an_unknown_one_cannot_start(
    service: str, tmp_path: Path, free_port: int
) -> None:
    if service == "nobody":
        with pytest.raises(subprocess.CalledProcessError) as caught:
            _run(service, tmp_path, free_port)
        assert "[services] has no entry for 'nobody'" in caught.value.stderr
    else:
        outcomes, _ = _run(service, tmp_path, free_port)
        assert outcomes["read code"] == "allowed"


def test_modules_imported_later_write_no_bytecode(tmp_path: Path) -> None:
    """A module first imported after start-up (no cached bytecode yet) loads without a
    refused write of its bytecode cache, and so without an error line in the log."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "fresh_module.py").write_text("VALUE = 42\n")
    script = (
        "import logging, sys\n"
        "from teaclave.assurance import runtime\n"
        "logging.basicConfig(stream=sys.stderr, level=logging.INFO, format='%(message)s')\n"
        "runtime.install('access_control')\n"
        "import fresh_module\n"
        "print(fresh_module.VALUE)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": ""},
    )
    assert done.stdout == "42\n"
    assert "refused" not in done.stderr
    assert not (code / "__pycache__").exists()
