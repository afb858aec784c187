"""Endpoints listen on loopback by default (docs/configuration.md, docs/deviations.md).

The listening sockets are read from the kernel's tables (/proc/net/tcp, tcp6);
nothing connects to a non-loopback address.
"""

from __future__ import annotations

import dataclasses
import importlib
import ipaddress
import os
from contextlib import ExitStack
from pathlib import Path

from teaclave.config import SERVICES, Config, Endpoints
from teaclave.services.base import ServiceEnv, ServiceMain
from teaclave.services.supervisor import LISTENS

LISTEN = "0A"  # TCP state in /proc/net/tcp*


def _address(hex_address: str) -> str:
    """An address as /proc/net/tcp* writes it (32-bit words in host order); IPv4-mapped as IPv4.

    gRPC listens on IPv6 sockets, so 127.0.0.1 shows as ::ffff:127.0.0.1 in tcp6.
    """
    raw = bytes.fromhex(hex_address)
    address = ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def _own_sockets() -> set[str]:
    """Inodes of the sockets this process holds."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def listening() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket this process listens on."""
    own = _own_sockets()
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in own:
                address, port = fields[1].split(":")
                found.add((_address(address), int(port, 16)))
    return found


def test_the_default_endpoints_are_loopback() -> None:
    for field in dataclasses.fields(Endpoints):
        address = getattr(Endpoints(), field.name)
        assert address.rpartition(":")[0] == "127.0.0.1", field.name


def test_the_address_decoder() -> None:
    assert _address("0100007F") == "127.0.0.1"
    assert _address("00000000000000000000000001000000") == "::1"
    assert _address("0000000000000000FFFF00000100007F") == "127.0.0.1"
    assert _address("00000000000000000000000000000000") == "::"


def _on_ports_of(free: Endpoints) -> Endpoints:
    """The default endpoints' hosts with ``free``'s ports (tests run side by side)."""
    default = Endpoints()
    return Endpoints(
        **{
            field.name: getattr(default, field.name).rpartition(":")[0]
            + ":"
            + getattr(free, field.name).rpartition(":")[2]
            for field in dataclasses.fields(Endpoints)
        }
    )


def test_services_started_with_the_defaults_listen_on_loopback_only(
    tmp_path: Path, loopback_endpoints: Endpoints, service_runner
) -> None:
    """Every service that listens (all but execution), on the default hosts."""
    endpoints = _on_ports_of(loopback_endpoints)
    config = Config(data_dir=str(tmp_path), endpoints=endpoints)
    before = listening()
    with ExitStack() as stack:
        for name in SERVICES:
            if LISTENS[name]:
                main: ServiceMain = importlib.import_module(f"teaclave.services.{name}").main
                env = ServiceEnv.create(config, name)
                stack.enter_context(service_runner(main, env, LISTENS[name]))
        opened = listening() - before
    ports = {
        int(getattr(endpoints, f.name).rpartition(":")[2]) for f in dataclasses.fields(endpoints)
    }
    assert opened == {("127.0.0.1", port) for port in ports}
