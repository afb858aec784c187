"""The static I/O check: the tree passes; an ungranted use names module, capability and line."""

from pathlib import Path

import pytest

from teaclave.assurance import iomanifest
from teaclave.assurance.capabilities import ManifestError, load, parse

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = parse('[modules]\n"teaclave.core" = []\n"teaclave.cli" = ["fs"]\n')


def test_the_source_tree_keeps_to_the_manifest() -> None:
    assert iomanifest.check_tree(ROOT / "src", load(ROOT / "io-manifest.toml")) == []


def test_the_no_capability_packages_have_no_grant() -> None:
    manifest = load(ROOT / "io-manifest.toml")
    for module in (
        "teaclave.core.access",
        "teaclave.crypto.protected_file",
        "teaclave.functions.builtin",
        "teaclave.attestation.intel.verify",
        "teaclave.attestation.snp",
        "teaclave.attestation.nitro",
        "teaclave.attestation.ratls",
        "teaclave.attestation.pki",
    ):
        assert manifest.allowed(module) == frozenset(), module


@pytest.mark.parametrize(
    ("snippet", "capability", "name"),
    [
        ("import socket", "net", "socket"),
        ("data = open('x').read()", "fs", "open"),
        ("import os\nkey = os.environ['KEY']", "env", "os.environ"),
        ("import subprocess\nsubprocess.run(['true'])", "proc", "subprocess.run"),
        ("import ctypes\nlibc = ctypes.CDLL(None)", "ffi", "ctypes.CDLL"),
        ("import time\nnow = time.time()", "clock", "time.time"),
        ("from datetime import datetime\nnow = datetime.now()", "clock", "datetime.datetime.now"),
        ("import subprocess as sp\nsp.run(['true'])", "proc", "subprocess.run"),
        ("from os import getenv as g\nhome = g('HOME')", "env", "os.getenv"),
        ("import os.path\nok = os.path.exists('x')", "fs", "os.path.exists"),
        ("from pathlib import Path\ntext = Path('x').read_text()", "fs", ".read_text()"),
        ("def f(base):\n    return (base / 'x').open()", "fs", ".open()"),
        ("import grpc", "net", "grpc"),
        ("from http.server import HTTPServer", "net", "http.server.HTTPServer"),
    ],
)
def test_an_ungranted_use_names_module_capability_and_line(
    snippet: str, capability: str, name: str
) -> None:
    source = (ROOT / "src/teaclave/core/ids.py").read_text(encoding="utf-8")
    line = source.count("\n") + snippet.count("\n") + 1
    violations = iomanifest.check_source(
        source + snippet + "\n", "teaclave.core.ids", MANIFEST, "src/teaclave/core/ids.py"
    )
    assert [str(v) for v in violations if v.use.line == line] == [
        f"src/teaclave/core/ids.py:{line}: teaclave.core.ids uses {capability} ({name}) "
        "without that capability in io-manifest.toml"
    ]


@pytest.mark.parametrize(
    "snippet",
    [
        "def open(path):\n    return path\nopen('x')",  # shadowed builtin
        "text = 'a.b'.replace('.', '/')",  # str.replace, not Path.replace
        "import os\npid = os.getpid()",
        "from pathlib import Path\nname = Path('a') / 'b'",  # pure path arithmetic
        "from datetime import UTC, datetime\nwhen = datetime.fromtimestamp(0, UTC)",
    ],
)
def test_what_is_not_io(snippet: str) -> None:
    assert iomanifest.uses(snippet) == []


def test_the_command_line_fails_on_a_copy_of_the_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = tmp_path / "src/teaclave/core/model.py"
    module.parent.mkdir(parents=True)
    module.write_text('"""Pure."""\n\nimport socket\n', encoding="utf-8")
    manifest = tmp_path / "io-manifest.toml"
    manifest.write_text('[modules]\n"teaclave.core" = []\n', encoding="utf-8")
    status = iomanifest.main(["--manifest", str(manifest), "--src", str(tmp_path / "src")])
    assert status == 1
    assert capsys.readouterr().out == (
        f"{module}:3: teaclave.core.model uses net (socket) without that capability in "
        "io-manifest.toml\n"
    )


def test_an_unused_grant_is_reported(tmp_path: Path) -> None:
    module = tmp_path / "teaclave/cli/main.py"
    module.parent.mkdir(parents=True)
    module.write_text("data = open('x').read()\n", encoding="utf-8")
    manifest = parse('[modules]\n"teaclave.cli" = ["fs", "net"]\n')
    assert iomanifest.check_tree(tmp_path, manifest) == [
        'io-manifest.toml: "teaclave.cli" grants net, which no module it covers uses '
        "(remove the grant)"
    ]


def test_the_longest_prefix_wins() -> None:
    manifest = parse(
        '[modules]\n"teaclave.a" = ["fs"]\n"teaclave.a.b" = []\n"teaclave.a.b.c" = ["net"]\n'
    )
    assert manifest.allowed("teaclave.a.x") == {"fs"}
    assert manifest.allowed("teaclave.a.b") == frozenset()
    assert manifest.allowed("teaclave.a.b.d") == frozenset()
    assert manifest.allowed("teaclave.a.b.c.e") == {"net"}
    assert manifest.allowed("teaclave.ab") == frozenset()  # whole components only
    assert manifest.allowed("other") == frozenset()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[modules]\n"teaclave.core" = ["disk"]\n',
            "io-manifest.toml: [modules] \"teaclave.core\": unknown capability 'disk' "
            "(one of fs, net, proc, env, clock, ffi)",
        ),
        (
            '[modules]\n"teaclave.core" = "fs"\n',
            'io-manifest.toml: [modules] "teaclave.core": expected a list of capability names',
        ),
        (
            '[modules]\n"teaclave.core" = ["fs", "fs"]\n',
            'io-manifest.toml: [modules] "teaclave.core": a capability is listed twice',
        ),
        (
            '[modules]\n"teaclave core" = []\n',
            'io-manifest.toml: [modules] "teaclave core": not a dotted module name',
        ),
        (
            "[module]\n",
            "io-manifest.toml: unknown section [module] (expected modules, services)",
        ),
        (
            "[services]\naccess_control = [net]\n",
            "io-manifest.toml: Invalid value (at line 2, column 19)",
        ),
    ],
)
def test_manifest_errors_are_precise(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_a_service_not_in_the_manifest_is_an_error() -> None:
    with pytest.raises(ManifestError, match="no entry for 'nobody'"):
        parse("[services]\n").service("nobody")
