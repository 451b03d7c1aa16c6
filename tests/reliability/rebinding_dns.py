"""A rebinding DNS server for R10, and a hook that makes a process resolve ``*.test`` names through it.

The server answers A queries for any name: the first query of a name gets ``first`` (a public address), every later
one gets ``then`` (loopback), with TTL 0 — what an attacker's authoritative server does to slip past a check that
resolves the name before the HTTP client resolves it again. AAAA and other queries get an empty answer.

:func:`install` replaces ``socket.getaddrinfo`` for names ending in ``.test`` by a query to that server, in the
process that calls it: the notifier under test runs exactly as in production, its system resolver simply answers
like a rebinding one. Nothing in the notifier knows about this hook.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

_ENV = "CITYSENSE_TEST_REBINDING_DNS"  # host:port of the server, read by install_from_env() in the subprocess


def _qname(packet: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while packet[offset]:
        n = packet[offset]
        labels.append(packet[offset + 1:offset + 1 + n].decode())
        offset += 1 + n
    return ".".join(labels), offset + 1


class RebindingDNS:
    def __init__(self, first: str, then: str = "127.0.0.1") -> None:
        self.first, self.then = first, then
        self.queries: list[tuple[str, str]] = []  # (name, answer given)
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="rebinding-dns", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                packet, peer = self.sock.recvfrom(512)
            except OSError:
                return
            txid, _flags, qdcount = struct.unpack("!HHH", packet[:6])
            name, end = _qname(packet, 12)
            qtype, _qclass = struct.unpack("!HH", packet[end:end + 4])
            question = packet[12:end + 4]
            answers = b""
            if qtype == 1:  # A
                with self._lock:
                    ip = self.then if name in self._seen else self.first
                    self._seen.add(name)
                    self.queries.append((name, ip))
                answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + socket.inet_aton(ip)
            header = struct.pack("!HHHHHH", txid, 0x8180, 1, 1 if answers else 0, 0, 0)
            self.sock.sendto(header + question + answers, peer)

    def close(self) -> None:
        self.sock.close()


def query_a(server: str, name: str) -> list[str]:
    """The A records ``server`` (host:port) gives for ``name``."""
    host, port = server.rsplit(":", 1)
    txid = int.from_bytes(os.urandom(2))
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"
    request = struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(request, (host, int(port)))
        packet = sock.recv(512)
    ancount = struct.unpack("!H", packet[6:8])[0]
    _, offset = _qname(packet, 12)
    offset += 4
    out = []
    for _ in range(ancount):
        offset += 2  # a compression pointer to the question name
        rtype, _rclass, _ttl, rdlen = struct.unpack("!HHIH", packet[offset:offset + 10])
        offset += 10
        if rtype == 1:
            out.append(socket.inet_ntoa(packet[offset:offset + rdlen]))
        offset += rdlen
    return out


def install(server: str) -> None:
    """Resolve ``*.test`` through ``server`` in this process (every call asks again: TTL 0)."""
    original = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002, ANN001, ANN202 - socket's names
        name = host.decode() if isinstance(host, bytes) else host
        if not isinstance(name, str) or not name.rstrip(".").endswith(".test"):
            return original(host, port, family, type, proto, flags)
        if family not in (0, socket.AF_INET, socket.AF_UNSPEC):
            return []
        kinds = [type] if type else [socket.SOCK_STREAM]
        return [(socket.AF_INET, kind, proto or socket.IPPROTO_TCP, "", (ip, int(port or 0)))
                for ip in query_a(server, name) for kind in kinds]

    socket.getaddrinfo = getaddrinfo


def install_from_env() -> None:
    if os.environ.get(_ENV):
        install(os.environ[_ENV])


def notifier_command(python: str) -> list[str]:
    """Run ``citysense-notifier`` with the hook installed from ``CITYSENSE_TEST_REBINDING_DNS``."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys; sys.path.insert(0, {here!r}); import rebinding_dns; rebinding_dns.install_from_env(); "
            "from citysense_notifier.cli import main; raise SystemExit(main())")
    return [python, "-c", code]
