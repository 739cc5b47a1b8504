#!/usr/bin/env python3
"""Interop: `wshub connect` against a server we did not write (Python `websockets`).

    WSHUB_BIN=target/debug/wshub python tests/interop/connect_test.py [-k NAME]

Each test starts a `websockets` server on 127.0.0.1:0 in-process, runs
`wshub connect` as a subprocess and checks both sides. Ends with the line
`N passed, M failed`; exits non-zero if any test failed.

With WSHUB_TLS_DIR=DIR (ca.pem, and cert.pem and key.pem for 127.0.0.1,
signed by it), the TLS tests run too: `wshub connect --ca` against a TLS
`websockets` server, and a `websockets` client (with an `ssl` context
trusting the CA) against `wshub serve --tls-cert --tls-key`.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

WSHUB_BIN = os.environ.get("WSHUB_BIN") or (sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "")
PROC_TIMEOUT = 15.0  # a `wshub connect` run must be over within this
WAIT = 10.0  # any other single wait


@dataclass
class Seen:
    """What the in-process server saw on its (last) connection."""

    messages: list[Any] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    offered_subprotocols: list[str] = field(default_factory=list)
    subprotocol: str | None = None
    extensions: list[str] = field(default_factory=list)
    path: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def recv_until_close(ws: ServerConnection, seen: Seen, echo: bool) -> None:
    while True:
        try:
            msg = await ws.recv()
        except ConnectionClosed as e:
            if e.rcvd is not None:
                seen.close_code, seen.close_reason = e.rcvd.code, e.rcvd.reason
            return
        seen.messages.append(msg)
        if echo:
            await ws.send(msg)


def make_handler(seen: Seen, on_open: Callable[[ServerConnection], Awaitable[None]] | None = None,
                 echo: bool = True) -> Callable[[ServerConnection], Awaitable[None]]:
    async def handler(ws: ServerConnection) -> None:
        req = ws.request
        assert req is not None
        seen.path = req.path
        seen.headers = {k.lower(): v for k, v in req.headers.raw_items()}
        seen.offered_subprotocols = [
            p.strip() for v in req.headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",") if p.strip()
        ]
        seen.subprotocol = ws.subprotocol
        seen.extensions = [e.name for e in ws.protocol.extensions]
        try:
            if on_open is not None:
                await on_open(ws)
            await recv_until_close(ws, seen, echo)
        finally:
            seen.done.set()

    return handler


@dataclass
class Run:
    code: int | None
    stdout: str
    stderr: str
    elapsed: float


_PROCS: list[asyncio.subprocess.Process] = []


def _kill_children_and_exit(signum: int, _frame: Any) -> None:
    """Never leave a `wshub connect` behind when this script is stopped."""
    for proc in _PROCS:
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
    os._exit(128 + signum)


async def spawn_connect(url: str, *extra: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        WSHUB_BIN, "connect", *extra, url,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _PROCS.append(proc)
    return proc


async def run_connect(url: str, stdin: bytes, *extra: str, timeout: float = PROC_TIMEOUT) -> Run:
    """Run `wshub connect [extra] URL`, feed stdin then EOF, bounded in time."""
    started = time.monotonic()
    proc = await spawn_connect(url, *extra)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"wshub connect did not exit within {timeout:.0f}s\nstdout: {out.decode(errors='replace')!r}\n"
            f"stderr: {err.decode(errors='replace')!r}") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return Run(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - started)


async def run_typed(url: str, lines: list[str], *extra: str) -> Run:
    """Run `wshub connect` as a person types: send one line, wait for its echo
    on stdout, then the next; then end input (Ctrl-D).

    Piping all input with EOF at once would race: the client's Close follows
    the messages in the same TCP segment, and a server that answers a Close
    at once (python-websockets does, as RFC 6455 section 5.5.1 allows) then
    drops the echoes it had not sent yet."""
    started = time.monotonic()
    proc = await spawn_connect(url, *extra)
    printed = []
    try:
        assert proc.stdin is not None and proc.stdout is not None
        for line in lines:
            proc.stdin.write((line + "\n").encode())
            await proc.stdin.drain()
            got = await asyncio.wait_for(proc.stdout.readline(), WAIT)
            printed.append(got.decode(errors="replace"))
        proc.stdin.close()
        out, err = await asyncio.wait_for(proc.communicate(), PROC_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stdout = "".join(printed) + out.decode(errors="replace")
    return Run(proc.returncode, stdout, err.decode(errors="replace"), time.monotonic() - started)


class Server:
    """`async with Server(handler, subprotocols=...) as url:`"""

    def __init__(self, handler: Callable[[ServerConnection], Awaitable[None]], **kwargs: Any) -> None:
        self.handler, self.kwargs = handler, kwargs

    async def __aenter__(self) -> str:
        self.server = await serve(self.handler, "127.0.0.1", 0, **self.kwargs)
        port = self.server.sockets[0].getsockname()[1]
        scheme = "wss" if self.kwargs.get("ssl") else "ws"
        return f"{scheme}://127.0.0.1:{port}/"

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()
        await asyncio.wait_for(self.server.wait_closed(), WAIT)


def describe(run: Run) -> str:
    return f"exit {run.code} after {run.elapsed:.1f}s\nstdout: {run.stdout!r}\nstderr: {run.stderr!r}"


# ------------------------------------------------------------------- tests


async def test_echo_lines_and_clean_close() -> None:
    seen = Seen()
    async with Server(make_handler(seen)) as url:
        run = await run_typed(url, ["hello", "world"])
        await asyncio.wait_for(seen.done.wait(), WAIT)
    lines = run.stdout.splitlines()
    assert "hello" in lines and "world" in lines, f"echoes missing from stdout\n{describe(run)}"
    assert lines.index("hello") < lines.index("world"), f"echoes out of order\n{describe(run)}"
    assert seen.messages == ["hello", "world"], f"server received {seen.messages!r} (want two text messages)"
    assert seen.close_code == 1000, f"server saw close code {seen.close_code!r}, want 1000\n{describe(run)}"
    assert run.code == 0, f"want exit 0\n{describe(run)}"


async def test_utf8_line() -> None:
    seen = Seen()
    text = "héllo wörld ☃ 🚀"
    async with Server(make_handler(seen)) as url:
        run = await run_typed(url, [text])
        await asyncio.wait_for(seen.done.wait(), WAIT)
    assert seen.messages == [text], f"server received {seen.messages!r}"
    assert text in run.stdout.splitlines(), f"echo missing\n{describe(run)}"
    assert run.code == 0, describe(run)
    assert seen.close_code == 1000, f"server saw close code {seen.close_code!r}"


async def test_closed_port_fails_with_one_line() -> None:
    with socket.socket() as s:  # find a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = await run_connect(f"ws://127.0.0.1:{port}/", b"")
    assert run.code not in (0, None), f"want a non-zero exit\n{describe(run)}"
    err_lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(err_lines) == 1, f"want exactly one line on stderr\n{describe(run)}"


async def send_binary_then_wait(
        seen: Seen, payload: bytes, *extra: str) -> tuple[Run, str]:
    """The server sends `payload` right after the handshake; stdin stays open until
    the client has printed a line, so the binary frame cannot race our Close."""
    async def on_open(ws: ServerConnection) -> None:
        await ws.send(payload)

    async with Server(make_handler(seen, on_open, echo=False)) as url:
        proc = await spawn_connect(url, *extra)
        started = time.monotonic()
        try:
            assert proc.stdout is not None and proc.stdin is not None
            try:
                first = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode(errors="replace").rstrip("\r\n")
            except asyncio.TimeoutError:
                first = "<nothing printed>"
            proc.stdin.close()
            out, err = await asyncio.wait_for(proc.communicate(), PROC_TIMEOUT)
            run = Run(proc.returncode, first + "\n" + out.decode(errors="replace"),
                      err.decode(errors="replace"), time.monotonic() - started)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await asyncio.wait_for(seen.done.wait(), WAIT)
    return run, first


async def test_binary_printed_as_hex() -> None:
    seen = Seen()
    run, first = await send_binary_then_wait(seen, b"\x01\x02\xff")
    assert first == "0102ff", f"want the line 0102ff, got {first!r}\n{describe(run)}"
    assert run.code == 0, describe(run)
    assert seen.close_code == 1000, f"server saw close code {seen.close_code!r}"


async def test_binary_printed_as_base64() -> None:
    seen = Seen()
    run, first = await send_binary_then_wait(seen, b"\x01\x02\xff", "--binary-output", "base64")
    assert first == "AQL/", f"want the line AQL/, got {first!r}\n{describe(run)}"
    assert run.code == 0, describe(run)


async def test_header_and_subprotocol() -> None:
    seen = Seen()
    async with Server(make_handler(seen), subprotocols=["chat"]) as url:
        run = await run_connect(url, b"", "--header", "X-Test: 1", "--subprotocol", "chat")
        await asyncio.wait_for(seen.done.wait(), WAIT)
    assert seen.headers.get("x-test") == "1", f"server saw headers {seen.headers!r}\n{describe(run)}"
    assert "chat" in seen.offered_subprotocols, f"offered subprotocols {seen.offered_subprotocols!r}"
    assert seen.subprotocol == "chat", f"negotiated {seen.subprotocol!r}"
    assert seen.close_code == 1000, f"server saw close code {seen.close_code!r}\n{describe(run)}"
    assert run.code == 0, describe(run)


async def test_compression_with_a_compressing_server() -> None:
    """python-websockets accepts permessage-deflate by default and compresses
    everything it sends; `wshub connect --compression` must offer it, inflate
    the server's messages and compress its own long ones."""
    seen = Seen()
    long_line = "compress me, I repeat myself; " * 200  # 6,000 bytes
    async with Server(make_handler(seen)) as url:
        run = await run_typed(url, [long_line, "short", long_line.upper()], "--compression")
        await asyncio.wait_for(seen.done.wait(), WAIT)
    assert seen.extensions == ["permessage-deflate"], f"negotiated {seen.extensions!r}\n{describe(run)}"
    assert "(extensions permessage-deflate" in run.stderr, f"connect did not report it\n{describe(run)}"
    assert seen.messages == [long_line, "short", long_line.upper()], f"server received {seen.messages!r}"
    lines = run.stdout.splitlines()
    assert lines[:3] == [long_line, "short", long_line.upper()], f"echoes differ\n{describe(run)}"
    assert run.code == 0 and seen.close_code == 1000, describe(run)


async def test_no_compression_unless_asked() -> None:
    seen = Seen()
    async with Server(make_handler(seen)) as url:
        run = await run_typed(url, ["plain"])
        await asyncio.wait_for(seen.done.wait(), WAIT)
    assert seen.extensions == [], f"negotiated {seen.extensions!r} without --compression"
    assert "sec-websocket-extensions" not in seen.headers, f"offered: {seen.headers!r}"
    assert run.code == 0, describe(run)


TLS_DIR = os.environ.get("WSHUB_TLS_DIR", "")


def tls_file(name: str) -> str:
    return os.path.join(TLS_DIR, name)


async def test_wss_connect_with_ca_to_a_tls_websockets_server() -> None:
    if not TLS_DIR:
        print("    (skipped: WSHUB_TLS_DIR not set)")
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_file("cert.pem"), tls_file("key.pem"))
    seen = Seen()
    async with Server(make_handler(seen), ssl=context) as url:
        assert url.startswith("wss://"), url
        run = await run_typed(url, ["over", "tls"], "--ca", tls_file("ca.pem"))
        await asyncio.wait_for(seen.done.wait(), WAIT)
        insecure = await run_connect(url, b"", "--insecure")
        untrusted = await run_connect(url, b"")
    assert run.stdout.splitlines()[:2] == ["over", "tls"], describe(run)
    assert seen.messages == ["over", "tls"] and seen.close_code == 1000, f"{seen.messages!r} {seen.close_code!r}"
    assert run.code == 0, describe(run)
    assert insecure.code == 0 and "warning: --insecure" in insecure.stderr, describe(insecure)
    assert untrusted.code == 1 and "UnknownIssuer" in untrusted.stderr, describe(untrusted)


async def test_websockets_client_with_an_ssl_context_against_wshub_serve_tls() -> None:
    if not TLS_DIR:
        print("    (skipped: WSHUB_TLS_DIR not set)")
        return
    proc = await asyncio.create_subprocess_exec(
        WSHUB_BIN, "serve", "--listen", "127.0.0.1:0",
        "--tls-cert", tls_file("cert.pem"), "--tls-key", tls_file("key.pem"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    _PROCS.append(proc)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode()
        found = re.match(r"listening on https://(\S+)", line)
        assert found, f"want 'listening on https://ADDR', got {line!r}"
        addr = found.group(1)
        context = ssl.create_default_context(cafile=tls_file("ca.pem"))
        async with connect(f"wss://{addr}/echo", ssl=context, max_size=None) as ws:
            for message in ["hello over TLS", b"\x00\x01" * 100_000]:
                await ws.send(message)
                echoed = await asyncio.wait_for(ws.recv(), WAIT)
                assert echoed == message, f"echo differs ({type(echoed).__name__}, {len(echoed)})"
        async with connect(f"wss://{addr}/ws", ssl=context) as ws:
            welcome = await asyncio.wait_for(ws.recv(), WAIT)
            assert '"welcome"' in welcome, welcome
        # The same port over plain ws:// is no WebSocket server.
        try:
            async with connect(f"ws://{addr}/echo", open_timeout=WAIT):
                raise AssertionError("a plain ws:// handshake succeeded on the TLS port")
        except (OSError, asyncio.TimeoutError, Exception) as e:  # noqa: BLE001 - any refusal will do
            if isinstance(e, AssertionError):
                raise
    finally:
        proc.kill()
        await proc.wait()


TESTS = [
    test_echo_lines_and_clean_close,
    test_utf8_line,
    test_closed_port_fails_with_one_line,
    test_binary_printed_as_hex,
    test_binary_printed_as_base64,
    test_header_and_subprotocol,
    test_compression_with_a_compressing_server,
    test_no_compression_unless_asked,
    test_wss_connect_with_ca_to_a_tls_websockets_server,
    test_websockets_client_with_an_ssl_context_against_wshub_serve_tls,
]


async def main() -> int:
    only = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else None
    passed = failed = 0
    for test in TESTS:
        if only and only not in test.__name__:
            continue
        started = time.monotonic()
        try:
            await asyncio.wait_for(test(), 60)
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            failed += 1
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            if isinstance(e, asyncio.TimeoutError):
                detail = "timed out"
            print(f"FAIL {test.__name__} ({time.monotonic() - started:.1f}s)\n    "
                  + (detail or repr(e)).replace("\n", "\n    "), flush=True)
        else:
            passed += 1
            print(f"ok   {test.__name__} ({time.monotonic() - started:.1f}s)", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    if not WSHUB_BIN:
        print("set WSHUB_BIN (or pass the wshub binary as the first argument)", file=sys.stderr)
        sys.exit(2)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _kill_children_and_exit)
    sys.exit(asyncio.run(main()))
