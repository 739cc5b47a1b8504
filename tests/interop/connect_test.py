#!/usr/bin/env python3
"""Interop: `wshub connect` and `wshub listen` against peers we did not write
(Python `websockets`), and `wshub connect` through real proxies (`proxy.py`
for HTTP CONNECT, `pproxy` for SOCKS5, started by the tests).

    WSHUB_BIN=target/debug/wshub python tests/interop/connect_test.py [-k NAME]

Each test starts a `websockets` server on 127.0.0.1:0 in-process (or, for
`listen`, a `websockets` client), runs `wshub` as a subprocess and checks
both sides; the proxy tests run the proxy as a child process on 127.0.0.1. Ends with the line
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


PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
              "no_proxy", "NO_PROXY")


def child_env(env: dict[str, str] | None) -> dict[str, str]:
    """This process's environment without proxy variables (a proxy set on
    the machine must not carry the direct tests), plus `env`."""
    base = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    base.update(env or {})
    return base


async def spawn_connect(url: str, *extra: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        WSHUB_BIN, "connect", *extra, url,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=child_env(env),
    )
    _PROCS.append(proc)
    return proc


async def run_connect(url: str, stdin: bytes, *extra: str, timeout: float = PROC_TIMEOUT,
                      env: dict[str, str] | None = None) -> Run:
    """Run `wshub connect [extra] URL`, feed stdin then EOF, bounded in time."""
    started = time.monotonic()
    proc = await spawn_connect(url, *extra, env=env)
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


async def run_typed(url: str, lines: list[str], *extra: str, env: dict[str, str] | None = None) -> Run:
    """Run `wshub connect` as a person types: send one line, wait for its echo
    on stdout, then the next; then end input (Ctrl-D).

    Piping all input with EOF at once would race: the client's Close follows
    the messages in the same TCP segment, and a server that answers a Close
    at once (python-websockets does, as RFC 6455 section 5.5.1 allows) then
    drops the echoes it had not sent yet."""
    started = time.monotonic()
    proc = await spawn_connect(url, *extra, env=env)
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


def tls_server_context() -> ssl.SSLContext | None:
    """The TLS server's context (cert.pem, key.pem), or None, having said
    the test is skipped, without WSHUB_TLS_DIR."""
    if not TLS_DIR:
        print("    (skipped: WSHUB_TLS_DIR not set)")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_file("cert.pem"), tls_file("key.pem"))
    return context


async def test_wss_connect_with_ca_to_a_tls_websockets_server() -> None:
    context = tls_server_context()
    if context is None:
        return
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


# ------------------------------------------- wscat/websocat flags, listen


async def test_execute_then_one_message() -> None:
    """`-x MSG -1`: send, print the first answer, close, exit 0; stdin unread."""
    seen = Seen()
    async with Server(make_handler(seen)) as url:
        run = await run_connect(url, b"not sent\n", "-x", "first", "-x", "second", "-1")
        await asyncio.wait_for(seen.done.wait(), WAIT)
    assert run.stdout.splitlines() == ["first"], f"want only the first echo\n{describe(run)}"
    assert seen.messages[:1] == ["first"] and "not sent" not in seen.messages, f"server got {seen.messages!r}"
    assert run.code == 0 and seen.close_code == 1000, describe(run)


async def test_execute_with_wait_prints_what_arrives_meanwhile() -> None:
    seen = Seen()

    async def chatty(ws: ServerConnection) -> None:
        msg = await ws.recv()
        for i in range(3):
            await ws.send(f"{msg} {i}")
        await recv_until_close(ws, seen, echo=False)
        seen.done.set()

    async with Server(chatty) as url:
        run = await run_connect(url, b"", "--execute", "answer", "--wait", "1")
        await asyncio.wait_for(seen.done.wait(), WAIT)
    assert run.stdout.splitlines() == ["answer 0", "answer 1", "answer 2"], describe(run)
    assert run.code == 0 and seen.close_code == 1000, describe(run)


async def test_origin_and_basic_auth_headers() -> None:
    seen = Seen()
    async with Server(make_handler(seen)) as url:
        run = await run_connect(url, b"", "--origin", "https://example.test", "--auth", "ada:s3cret:x")
        await asyncio.wait_for(seen.done.wait(), WAIT)
        first = dict(seen.headers)
        in_url = await run_connect(url.replace("ws://", "ws://bob:pw%40@"), b"")
    assert first.get("origin") == "https://example.test", f"{first!r}\n{describe(run)}"
    # base64("ada:s3cret:x"): the password may hold colons.
    assert first.get("authorization") == "Basic YWRhOnMzY3JldDp4", f"{first!r}"
    assert run.code == 0, describe(run)
    # user:password@ in the URL, percent-decoded: base64("bob:pw@").
    assert seen.headers.get("authorization") == "Basic Ym9iOnB3QA==", f"{seen.headers!r}\n{describe(in_url)}"
    bad = await run_connect(url, b"", "--auth", "no-colon")
    assert bad.code == 2 and "--auth" in bad.stderr and "USER:PASSWORD" in bad.stderr, describe(bad)


async def test_show_ping_pong_and_slash_commands() -> None:
    """The server's Ping is shown; `/ping` is answered by the server's Pong,
    shown with its round-trip time; `/close 4001 bye` closes with that."""
    seen = Seen()

    async def pinging(ws: ServerConnection) -> None:
        await ws.ping(b"from-python")
        await make_handler(seen)(ws)

    async with Server(pinging) as url:
        proc = await spawn_connect(url, "--slash", "--show-ping-pong")
        assert proc.stdin is not None and proc.stderr is not None
        stderr: list[str] = []

        async def stderr_until(needle: str) -> None:
            while not any(needle in line for line in stderr):
                line = (await asyncio.wait_for(proc.stderr.readline(), WAIT)).decode(errors="replace")
                assert line, f"stderr ended before {needle!r}: {stderr!r}"
                stderr.append(line)

        try:
            await stderr_until('ping received (payload "from-python")')
            proc.stdin.write(b"/ping probe\n//slashed\n")
            await proc.stdin.drain()
            await stderr_until('pong received (payload "probe"), round trip')
            proc.stdin.write(b"/close 4001 bye\n")
            await proc.stdin.drain()
            out, err = await asyncio.wait_for(proc.communicate(), PROC_TIMEOUT)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await asyncio.wait_for(seen.done.wait(), WAIT)
    rtt = [line for line in stderr if "round trip" in line][0]
    assert re.search(r"round trip \d+\.\d{3} ms", rtt), rtt
    assert seen.messages == ["/slashed"], f"server got {seen.messages!r}"
    assert (seen.close_code, seen.close_reason) == (4001, "bye"), f"{seen.close_code!r} {seen.close_reason!r}"
    assert proc.returncode == 0, f"exit {proc.returncode}: {''.join(stderr)}{err.decode()}"


async def test_redirect_followed_with_location_flag() -> None:
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    seen = Seen()

    def redirect(connection: ServerConnection, request: Any) -> Any:
        if request.path == "/old":
            return Response(302, "Found", Headers([("Location", "/new?x=1"), ("Content-Length", "0")]), b"")
        return None

    async with Server(make_handler(seen), process_request=redirect) as url:
        refused = await run_connect(url + "old", b"")
        run = await run_connect(url + "old", b"", "-L")
        await asyncio.wait_for(seen.done.wait(), WAIT)
    assert refused.code == 1 and "302 redirect to ws://" in refused.stderr and "add -L" in refused.stderr, \
        describe(refused)
    assert seen.path == "/new?x=1", f"server saw {seen.path!r}\n{describe(run)}"
    assert "redirected (302) to ws://127.0.0.1:" in run.stderr and run.code == 0, describe(run)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for_port(port: int, proc: asyncio.subprocess.Process, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise AssertionError(f"{what} exited with {proc.returncode} before listening")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not listen on {port} within {WAIT}s")


class ProxyServer:
    """A real proxy in a child process: `proxy.py` (HTTP CONNECT, Basic
    authentication) or `pproxy` (SOCKS5 with user name and password), on
    127.0.0.1; `async with ProxyServer("http") as proxy:` gives its port
    and, once stopped, its log."""

    def __init__(self, kind: str, user: str = "pxuser", password: str = "px pass") -> None:
        self.kind, self.user, self.password = kind, user, password
        self.port = free_port()
        self.log_path = os.path.join(TLS_DIR or "/tmp", f"{kind}-proxy-{self.port}.log")

    async def __aenter__(self) -> "ProxyServer":
        if self.kind == "http":
            argv = ["-m", "proxy", "--hostname", "127.0.0.1", "--port", str(self.port),
                    "--basic-auth", f"{self.user}:{self.password}", "--num-workers", "1",
                    "--num-acceptors", "1", "--log-level", "INFO", "--log-file", self.log_path]
        else:
            argv = ["-m", "pproxy", "-l", f"socks5://127.0.0.1:{self.port}#{self.user}:{self.password}", "-v"]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdin=asyncio.subprocess.DEVNULL,
            stdout=open(self.log_path, "ab"), stderr=asyncio.subprocess.STDOUT, env=child_env(None))
        _PROCS.append(self.proc)
        await wait_for_port(self.port, self.proc, f"the {self.kind} proxy")
        return self

    def url(self, scheme: str, credentials: bool = True) -> str:
        from urllib.parse import quote
        auth = f"{quote(self.user)}:{quote(self.password)}@" if credentials else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}"

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    async def __aexit__(self, *exc: Any) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), WAIT)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def test_through_an_http_connect_proxy_with_basic_auth() -> None:
    seen = Seen()
    async with Server(make_handler(seen)) as url, ProxyServer("http") as proxy:
        run = await run_typed(url, ["via proxy.py"], "--proxy", proxy.url("http"))
        # From the environment (ws:// reads http_proxy), and refused
        # without credentials.
        from_env = await run_connect(url, b"", "-x", "env", "-1", env={"HTTP_PROXY": proxy.url("http")})
        no_auth = await run_connect(url, b"", "--proxy", proxy.url("http", credentials=False))
        await asyncio.wait_for(seen.done.wait(), WAIT)
    port = url.rsplit(":", 1)[1].strip("/")
    assert run.stdout.splitlines()[:1] == ["via proxy.py"] and run.code == 0, describe(run)
    assert f"CONNECT 127.0.0.1:{port}" in proxy.log(), f"the proxy saw no CONNECT:\n{proxy.log()[-2000:]}"
    assert from_env.stdout.splitlines() == ["env"] and from_env.code == 0, describe(from_env)
    assert no_auth.code == 1 and "407" in no_auth.stderr and "USER:PASSWORD" in no_auth.stderr, describe(no_auth)


async def test_wss_through_an_http_connect_proxy_from_https_proxy() -> None:
    context = tls_server_context()
    if context is None:
        return
    seen = Seen()
    async with Server(make_handler(seen), ssl=context) as url, ProxyServer("http") as proxy:
        # https_proxy for wss://; http_proxy (dead) must not be used for it.
        env = {"HTTPS_PROXY": proxy.url("http"), "http_proxy": "http://127.0.0.1:1"}
        run = await run_typed(url, ["tls in a tunnel"], "--ca", tls_file("ca.pem"), env=env)
        await asyncio.wait_for(seen.done.wait(), WAIT)
    assert run.stdout.splitlines()[:1] == ["tls in a tunnel"] and run.code == 0, describe(run)
    assert "CONNECT 127.0.0.1:" in proxy.log(), proxy.log()[-2000:]


async def test_through_a_socks5_proxy() -> None:
    seen = Seen()
    async with Server(make_handler(seen)) as url, ProxyServer("socks5") as proxy:
        run = await run_typed(url, ["via pproxy"], "--proxy", proxy.url("socks5h"))
        from_env = await run_connect(url, b"", "-x", "all", "-1", env={"ALL_PROXY": proxy.url("socks5")})
        plain = await run_connect(url, b"", "-x", "flag", "-1", "--socks5", f"127.0.0.1:{proxy.port}")
        await asyncio.wait_for(seen.done.wait(), WAIT)
    assert run.stdout.splitlines()[:1] == ["via pproxy"] and run.code == 0, describe(run)
    assert from_env.stdout.splitlines() == ["all"] and from_env.code == 0, describe(from_env)
    # pproxy also takes clients that offer no authentication.
    assert plain.stdout.splitlines() == ["flag"] and plain.code == 0, describe(plain)
    assert "socks5" in proxy.log().lower(), proxy.log()[-2000:]


async def test_no_proxy_and_a_dead_proxy() -> None:
    seen = Seen()
    dead = {"HTTP_PROXY": "http://127.0.0.1:1"}
    async with Server(make_handler(seen)) as url:
        through_dead = await run_connect(url, b"", env=dead)
        bypassed = await run_connect(url, b"", "-x", "direct", "-1", env={**dead, "NO_PROXY": "localhost,127.0.0.1"})
        no_proxy_flag = await run_connect(url, b"", "-x", "flag", "-1", "--no-proxy", env=dead)
        bad = await run_connect(url, b"", env={"HTTP_PROXY": "gopher://x"})
    assert through_dead.code == 1 and "cannot reach the proxy 127.0.0.1:1 (HTTP_PROXY)" in through_dead.stderr, \
        describe(through_dead)
    assert bypassed.stdout.splitlines() == ["direct"] and bypassed.code == 0, describe(bypassed)
    assert no_proxy_flag.stdout.splitlines() == ["flag"] and no_proxy_flag.code == 0, describe(no_proxy_flag)
    assert bad.code == 2 and bad.stderr.startswith('error: HTTP_PROXY "gopher://x"'), describe(bad)


async def test_listen_against_a_websockets_client() -> None:
    """`wshub listen 0 --once`: prints what the client sends, sends stdin
    lines to it, answers its Ping, turns a second client away with 503,
    and exits 0 once the client has gone."""
    from websockets.exceptions import InvalidStatus

    proc = await asyncio.create_subprocess_exec(
        WSHUB_BIN, "listen", "--once", "--show-ping-pong", "0",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=child_env(None),
    )
    _PROCS.append(proc)
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), WAIT)).decode()
        found = re.match(r"listening on (ws://\S+)", line)
        assert found, f"want 'listening on ws://ADDR', got {line!r}"
        async with connect(found.group(1) + "/any/path") as ws:
            await ws.send("from python")
            printed = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode().rstrip("\n")
            assert printed == "from python", printed
            await ws.send(b"\x00\xff")
            printed = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode().rstrip("\n")
            assert printed == "00ff", printed
            proc.stdin.write("from wshub ☃\n".encode())
            await proc.stdin.drain()
            assert await asyncio.wait_for(ws.recv(), WAIT) == "from wshub ☃"
            pong = await ws.ping(b"py")
            await asyncio.wait_for(pong, WAIT)
            try:
                async with connect(found.group(1), open_timeout=WAIT):
                    raise AssertionError("a second client was taken while one is served")
            except InvalidStatus as e:
                assert e.response.status_code == 503, e
        out, err = await asyncio.wait_for(proc.communicate(), PROC_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"exit {proc.returncode}\nstderr: {err.decode()!r}"
    assert 'ping received (payload "py")' in err.decode(), err.decode()


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
    test_execute_then_one_message,
    test_execute_with_wait_prints_what_arrives_meanwhile,
    test_origin_and_basic_auth_headers,
    test_show_ping_pong_and_slash_commands,
    test_redirect_followed_with_location_flag,
    test_through_an_http_connect_proxy_with_basic_auth,
    test_wss_through_an_http_connect_proxy_from_https_proxy,
    test_through_a_socks5_proxy,
    test_no_proxy_and_a_dead_proxy,
    test_listen_against_a_websockets_client,
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
