#!/usr/bin/env python3
"""Run the Autobahn TestSuite cases against wshub with kosoku and check the verdicts.

  python autobahn/run.py server --wshub PATH_TO_WSHUB
      starts `wshub serve --listen 127.0.0.1:0` and drives ws://127.0.0.1:PORT/echo
      with kosoku's fuzzingclient (all cases, groups 1-13).

  python autobahn/run.py client --client PATH_TO_AUTOBAHN_CLIENT
      starts kosoku's fuzzingserver on an ephemeral port and runs
      `PATH_TO_AUTOBAHN_CLIENT ws://127.0.0.1:PORT` against it.

  --tls (either mode) runs the same cases over TLS through tls_relay.py
      (kosoku speaks plain ws:// only), with a throwaway CA and server
      certificate made by the openssl command: in server mode `wshub serve
      --tls-cert --tls-key` behind a relay that takes kosoku's plain
      connections and opens TLS to wshub; in client mode the client gets
      wss://RELAY, a relay that ends TLS in front of the fuzzingserver, and
      trusts the CA through SSL_CERT_FILE (read by rustls-native-certs).
      Reports go to reports/<mode>-tls/; verdicts are compared with the same
      expected section as over ws://.

Both write autobahn/reports/<mode>/results.json (plus kosoku's html reports), print
the verdict counts, and compare every case with autobahn/expected-results.json.
Exit status: 0 all good, 1 conformance failure or a difference from the expected
verdicts, 2 the run itself could not be carried out (binary missing, timeout, ...),
130/143 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_EXPECTED = HERE / "expected-results.json"
REPORTS = HERE / "reports"

# Verdicts a case in groups 1-10 may have.
GOOD_BEHAVIOR = ("OK", "NON-STRICT", "INFORMATIONAL")
GOOD_CLOSE = ("OK", "INFORMATIONAL")
# Groups where every case must pass; 12 and 13 (permessage-deflate) may be
# UNIMPLEMENTED but must still match the expected file.
STRICT_GROUPS = range(1, 11)

# Lower is better; used to tell an improvement from a regression.
BEHAVIOR_RANK = {"OK": 0, "NON-STRICT": 1, "INFORMATIONAL": 1, "UNIMPLEMENTED": 2, "FAILED": 3, "ERROR": 4}
CLOSE_RANK = {"OK": 0, "INFORMATIONAL": 0, "WRONG CODE": 2, "UNCLEAN": 2, "FAILED BY CLIENT": 2, "FAILED": 3}
SUMMARY_ORDER = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")

STARTUP_TIMEOUT = 20.0  # wshub serve must print its listening line within this
STOP_GRACE = 10.0  # after SIGTERM, before SIGKILL
CLIENT_EXIT_GRACE = 20.0  # client must exit this long after the results are in
RESULT_GRACE = 10.0  # results must arrive this long after the client exited

LISTEN_RE = re.compile(r"listening on (?:https?|wss?)://[^\s/]*:(\d+)")


class HarnessError(Exception):
    """The run could not be carried out (as opposed to: cases failed)."""


def log(msg: str) -> None:
    print(f"[autobahn] {msg}", file=sys.stderr, flush=True)


def case_key(case_id: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in case_id.split("."))
    except ValueError:
        return (1 << 30,)


def case_group(case_id: str) -> int:
    return case_key(case_id)[0]


# --------------------------------------------------------------------------- children

_CHILDREN: list[asyncio.subprocess.Process] = []


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Signal the child's process group (it was started in its own session)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        if proc.returncode is None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass


async def spawn(argv: list[str], **kwargs: Any) -> asyncio.subprocess.Process:
    try:
        proc = await asyncio.create_subprocess_exec(*argv, start_new_session=True, **kwargs)
    except OSError as e:
        raise HarnessError(f"cannot start {argv[0]}: {e}") from e
    _CHILDREN.append(proc)
    return proc


async def stop(proc: asyncio.subprocess.Process, name: str, graceful: bool = True) -> None:
    """SIGTERM (if graceful), wait a bounded time, then SIGKILL the whole group."""
    if proc.returncode is None and graceful:
        log(f"stopping {name} (pid {proc.pid}) with SIGTERM")
        _signal_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except asyncio.TimeoutError:
            log(f"warning: {name} did not exit within {STOP_GRACE:.0f}s of SIGTERM; killing it")
    # Always sweep the group: leftovers of a wrapper script die here too.
    _signal_group(proc, signal.SIGKILL)
    if proc.returncode is None:
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            log(f"warning: {name} (pid {proc.pid}) did not die after SIGKILL")


def kill_all_children() -> None:
    """Last-resort synchronous cleanup (after the event loop is gone)."""
    for proc in _CHILDREN:
        _signal_group(proc, signal.SIGKILL)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


# --------------------------------------------------------------------------- modes


async def read_listen_port(proc: asyncio.subprocess.Process, logf: Any) -> int:
    """Read wshub's stdout until the `listening on http://HOST:PORT` line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HarnessError(f"wshub printed no 'listening on' line within {STARTUP_TIMEOUT:.0f}s")
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), remaining)
        except asyncio.TimeoutError:
            continue
        if not raw:
            try:
                code: Any = await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                code = "unknown: it closed its stdout but is still running"
            raise HarnessError(f"wshub exited (status {code}) before printing its 'listening on' line")
        line = raw.decode(errors="replace").rstrip()
        logf.write(f"[stdout] {line}\n")
        logf.flush()
        m = LISTEN_RE.search(line)
        if m:
            if 0 < int(m.group(1)) < 65536:
                return int(m.group(1))
            raise HarnessError(f"cannot read the port from wshub's line {line!r}")


async def drain(stream: asyncio.StreamReader, logf: Any) -> None:
    """Keep the pipe empty so the server never blocks on a full stdout."""
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return
        logf.write(chunk.decode(errors="replace"))
        logf.flush()


def make_certificates(outdir: Path) -> dict[str, Path]:
    """A throwaway CA, and a server certificate for 127.0.0.1 signed by it
    (EC P-256, 2 days), made with the openssl command: paths of ca, cert, key."""
    d = outdir / "tls"
    d.mkdir()
    files = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem"}
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=wshub autobahn CA",
         "-keyout", str(d / "ca-key.pem"), "-out", str(files["ca"])],
        ["openssl", "req", *ec, "-subj", "/CN=localhost", "-keyout", str(files["key"]), "-out", str(d / "server.csr")],
        ["openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(files["ca"]),
         "-CAkey", str(d / "ca-key.pem"), "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"),
         "-out", str(files["cert"])],
    ]
    for argv in steps:
        try:
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            raise HarnessError(f"cannot make the test certificates with openssl (is it installed?): {e}") from e
    return files


async def start_relay(stack: contextlib.AsyncExitStack, argv: list[str], logf: Any) -> int:
    """Starts tls_relay.py with `argv`, stopped when `stack` closes; returns its port."""
    argv = [sys.executable, str(HERE / "tls_relay.py"), *argv]
    log(f"starting {' '.join(argv)}")
    proc = await spawn(argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=logf)
    stack.push_async_callback(stop, proc, "tls relay")
    return await read_listen_port(proc, logf)


async def run_server_mode(args: argparse.Namespace, outdir: Path, problems: list[str]) -> list[Any]:
    from kosoku import FailureError, run_fuzzingclient

    wshub = resolve_binary(args.wshub, "--wshub")
    logpath = outdir / "wshub.log"
    with open(logpath, "w") as logf:
        # permessage-deflate on, compressing every message (threshold 0) and
        # keeping the compression context between messages, so groups 12-13
        # exercise our compressor as well as our decompressor, with context
        # takeover (the default, no takeover, is the simpler case: a fresh
        # state per message).
        # The fuzzing client opens a connection per case, all from
        # 127.0.0.1, so the per-address admission limits (503) are off.
        argv = [wshub, "serve", "--listen", "127.0.0.1:0",
                "--compression", "--compression-threshold", "0", "--compression-context-takeover",
                "--max-connections-per-ip", "0", "--handshakes-per-ip", "0"]
        if args.axum_echo:
            # The same echo as an axum route (examples/axum_echo.rs), with
            # the same compression settings.
            argv = [resolve_binary(args.axum_echo, "--axum-echo"), "127.0.0.1:0"]
        certs = make_certificates(outdir) if args.tls else None
        if certs:
            argv += ["--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])]
        log(f"starting {' '.join(argv)} (its output goes to {logpath})")
        proc = await spawn(argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=logf)
        drainer: asyncio.Task[None] | None = None
        relays = contextlib.AsyncExitStack()
        try:
            try:
                port = await read_listen_port(proc, logf)
            except HarnessError:
                await stop(proc, "wshub", graceful=False)
                log(f"wshub output:\n{tail(logpath)}")
                raise
            assert proc.stdout is not None
            drainer = asyncio.create_task(drain(proc.stdout, logf))
            if certs:
                relay = ["to-tls", "--target", f"127.0.0.1:{port}", "--ca", str(certs["ca"])]
                port = await start_relay(relays, relay, logf)
            url = f"ws://127.0.0.1:{port}/echo"
            log(f"running the fuzzingclient against {url} "
                f"(cases: {', '.join(args.include) if args.include else 'all'}"
                f"{'; excluding ' + ', '.join(args.exclude) if args.exclude else ''}; "
                f"concurrency {args.concurrency}; timeout {args.timeout:.0f}s)")
            started = time.monotonic()
            try:
                results = await asyncio.wait_for(
                    run_fuzzingclient(url, args.include or None, args.exclude or None, concurrency=args.concurrency),
                    args.timeout,
                )
            except FailureError as failure:
                results = list(failure.results)
            except asyncio.TimeoutError:
                raise HarnessError(f"the fuzzingclient did not finish within {args.timeout:.0f}s") from None
            log(f"fuzzingclient finished {len(results)} cases in {time.monotonic() - started:.1f}s")
            if proc.returncode is not None:
                log(f"wshub output:\n{tail(logpath)}")
                problems.append(f"wshub exited (status {proc.returncode}) during the run; see {logpath}")
            return results
        finally:
            await relays.aclose()
            await stop(proc, "wshub")
            if drainer is not None:
                drainer.cancel()
                await asyncio.gather(drainer, return_exceptions=True)


async def run_client_mode(args: argparse.Namespace, outdir: Path, problems: list[str]) -> list[Any]:
    from kosoku import FailureError, run_fuzzingserver

    client = resolve_binary(args.client, "--client")
    logpath = outdir / "client.log"

    async def get_result(server: Any) -> list[Any]:
        try:
            return list(await server.get_result())
        except FailureError as failure:
            return list(failure.results)

    certs = make_certificates(outdir) if args.tls else None
    env = {**os.environ, "SSL_CERT_FILE": str(certs["ca"])} if certs else None
    with open(logpath, "w") as logf:
        async with run_fuzzingserver(args.include or None, args.exclude or None, host="127.0.0.1", port=0) as server, \
                contextlib.AsyncExitStack() as relays:
            base = f"ws://127.0.0.1:{server.port}"
            if certs:
                relay = ["from-tls", "--target", f"127.0.0.1:{server.port}",
                         "--cert", str(certs["cert"]), "--key", str(certs["key"])]
                base = f"wss://127.0.0.1:{await start_relay(relays, relay, logf)}"
            log(f"fuzzingserver listening on {base} "
                f"(cases: {', '.join(args.include) if args.include else 'all'}"
                f"{'; excluding ' + ', '.join(args.exclude) if args.exclude else ''}; timeout {args.timeout:.0f}s)")
            argv = [client, base]
            log(f"starting {' '.join(argv)} (its output goes to {logpath})")
            started = time.monotonic()
            proc = await spawn(argv, stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf, env=env)
            result_task = asyncio.ensure_future(get_result(server))
            exit_task = asyncio.ensure_future(proc.wait())
            try:
                done, _ = await asyncio.wait({result_task, exit_task}, timeout=args.timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    log(f"client output:\n{tail(logpath)}")
                    raise HarnessError(f"the client did not finish the run within {args.timeout:.0f}s")
                if result_task not in done:
                    # The client exited; the results may still be on their way.
                    try:
                        await asyncio.wait_for(asyncio.shield(result_task), RESULT_GRACE)
                    except asyncio.TimeoutError:
                        log(f"client output:\n{tail(logpath)}")
                        raise HarnessError(
                            f"the client exited (status {proc.returncode}) without finishing the run "
                            f"(no /updateReports after all cases?); see {logpath}") from None
                results = result_task.result()
                log(f"fuzzingserver got {len(results)} results in {time.monotonic() - started:.1f}s")
                try:
                    code = await asyncio.wait_for(asyncio.shield(exit_task), CLIENT_EXIT_GRACE)
                except asyncio.TimeoutError:
                    problems.append(f"the client did not exit within {CLIENT_EXIT_GRACE:.0f}s after the run finished")
                else:
                    if code != 0:
                        log(f"client output:\n{tail(logpath)}")
                        problems.append(f"the client exited with status {code}; see {logpath}")
                return results
            finally:
                result_task.cancel()
                await stop(proc, "client")
                exit_task.cancel()
                await asyncio.gather(result_task, exit_task, return_exceptions=True)


def resolve_binary(path: str, flag: str) -> str:
    found = shutil.which(path) if os.sep not in path else (path if os.access(path, os.X_OK) else None)
    if not found or not os.path.isfile(found):
        raise HarnessError(f"{flag} {path}: not an executable file")
    return os.path.abspath(found)


# --------------------------------------------------------------------------- verdicts


def to_table(results: list[Any]) -> dict[str, dict[str, Any]]:
    table = {}
    for r in sorted(results, key=lambda r: case_key(r.case_id)):
        table[r.case_id] = {
            "behavior": r.behavior.value,
            "behaviorClose": r.behavior_close.value,
            "remoteCloseCode": r.remote_close_code,
        }
    return table


def dump_cases(cases: dict[str, dict[str, Any]], indent: str) -> str:
    """One case per line, so that diffs of the files stay readable."""
    if not cases:
        return "{}"
    lines = [f'{indent}  {json.dumps(cid)}: {json.dumps(v, sort_keys=True)}'
             for cid, v in sorted(cases.items(), key=lambda kv: case_key(kv[0]))]
    return "{\n" + ",\n".join(lines) + f"\n{indent}}}"


def write_results(table: dict[str, dict[str, Any]], path: Path) -> None:
    path.write_text(dump_cases(table, "") + "\n")


def write_expected(expected: dict[str, Any], path: Path) -> None:
    parts = [f'  {json.dumps(mode)}: {dump_cases(expected[mode], "  ")}' for mode in sorted(expected)]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text("{\n" + ",\n".join(parts) + "\n}\n")
    os.replace(tmp, path)


def summary(mode: str, table: dict[str, dict[str, Any]]) -> list[str]:
    beh = collections.Counter(v["behavior"] for v in table.values())
    close = collections.Counter(v["behaviorClose"] for v in table.values())
    b_keys = list(SUMMARY_ORDER) + sorted(k for k in beh if k not in SUMMARY_ORDER)
    c_keys = ["OK", "INFORMATIONAL"] + sorted(k for k in close if k not in ("OK", "INFORMATIONAL"))
    return [
        f"{mode}: " + ", ".join(f"{k} {beh.get(k, 0)}" for k in b_keys) + f" ({len(table)} cases)",
        f"{mode} close: " + ", ".join(f"{k} {close.get(k, 0)}" for k in c_keys),
    ]


def hard_failures(table: dict[str, dict[str, Any]]) -> list[str]:
    """Cases of groups 1-10 that are not conformant, whatever the expected file says."""
    return [cid for cid, v in table.items()
            if case_group(cid) in STRICT_GROUPS
            and (v["behavior"] not in GOOD_BEHAVIOR or v["behaviorClose"] not in GOOD_CLOSE)]


def is_better(got: dict[str, Any], exp: dict[str, Any]) -> bool:
    gb, eb = BEHAVIOR_RANK.get(got["behavior"], 9), BEHAVIOR_RANK.get(exp.get("behavior"), 9)
    gc, ec = CLOSE_RANK.get(got["behaviorClose"], 9), CLOSE_RANK.get(exp.get("behaviorClose"), 9)
    return gb <= eb and gc <= ec and (gb, gc) != (eb, ec)


def fmt(v: dict[str, Any] | None) -> str:
    if v is None:
        return "(absent)"
    s = f"{v.get('behavior')}/{v.get('behaviorClose')}"
    if v.get("remoteCloseCode") is not None:
        s += f" (close {v['remoteCloseCode']})"
    return s


def compare(mode: str, table: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]] | None,
            partial: bool) -> tuple[list[str], list[str]]:
    """Return (regressions, improvements) as printable lines."""
    regressions: list[str] = []
    improvements: list[str] = []
    if expected is None:
        return regressions, improvements
    for cid, got in table.items():
        exp = expected.get(cid)
        if exp is None:
            regressions.append(f"  {cid}: {fmt(got)}, but the case is not in the expected file")
        elif (got["behavior"], got["behaviorClose"]) != (exp.get("behavior"), exp.get("behaviorClose")):
            line = f"  {cid}: expected {fmt(exp)}, got {fmt(got)}"
            (improvements if is_better(got, exp) else regressions).append(line)
    if not partial:
        for cid in sorted(set(expected) - set(table), key=case_key):
            regressions.append(f"  {cid}: expected {fmt(expected[cid])}, but the case did not run")
    return regressions, improvements


def load_expected(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise HarnessError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: expected a JSON object with keys 'server' and 'client'")
    return data


def check(args: argparse.Namespace, results: list[Any], outdir: Path, problems: list[str]) -> int:
    mode = args.mode
    table = to_table(results)
    write_results(table, outdir / "results.json")
    log(f"wrote {outdir / 'results.json'}")
    if not args.no_html:
        try:
            from kosoku._report import write_reports

            write_reports(results, str(outdir))
            log(f"wrote kosoku's reports to {outdir}/index.html")
        except Exception as e:  # the report writer is a private API: never fail on it
            log(f"warning: could not write the html reports: {e!r}")

    partial = bool(args.include or args.exclude)
    for line in summary(mode, table):
        print(line)

    failures = hard_failures(table)
    expected_path: Path = args.expected
    all_expected = load_expected(expected_path)
    section = None if all_expected is None else all_expected.get(mode)
    if section is not None and not isinstance(section, dict):
        raise HarnessError(f"{expected_path}: section {mode!r} is not an object")
    regressions, improvements = compare(mode, table, section, partial)

    if failures:
        print(f"{mode}: {len(failures)} case(s) of groups 1-10 are not conformant:")
        for cid in failures:
            print(f"  {cid}: {fmt(table[cid])}")

    if args.update_expected:
        if failures:
            print(f"{mode}: refusing to update {expected_path.name}: groups 1-10 must pass first")
            return 1
        if problems:
            print(f"{mode}: refusing to update {expected_path.name}: the run did not end cleanly")
            return 1
        if not table:
            print(f"{mode}: refusing to update {expected_path.name}: no case ran")
            return 1
        new_all = dict(all_expected or {})
        fresh = {cid: {"behavior": v["behavior"], "behaviorClose": v["behaviorClose"]} for cid, v in table.items()}
        if partial and section is not None:
            merged = dict(section)
            merged.update(fresh)
            fresh = merged
        new_all[mode] = fresh
        for line in regressions + improvements:
            print(f"{mode}: updated {line.strip()}")
        write_expected(new_all, expected_path)
        print(f"{mode}: wrote {len(fresh)} cases to the {mode!r} section of {expected_path}"
              + (" (merged with the cases that did not run)" if partial and section is not None else ""))
        return 0

    if section is None:
        where = "does not exist" if all_expected is None else f"has no {mode!r} section"
        log(f"{expected_path} {where}: only checking that groups 1-10 pass")
    if regressions:
        print(f"{mode}: {len(regressions)} case(s) differ from {expected_path.name} (regression):")
        for line in regressions:
            print(line)
    if improvements:
        print(f"{mode}: {len(improvements)} case(s) are better than {expected_path.name}:")
        for line in improvements:
            print(line)
        print(f"{mode}: refresh the expected file so it stays true: "
              f"python autobahn/run.py {mode} ... --update-expected")
    for problem in problems:
        print(f"{mode}: ERROR: {problem}")
    ok = not failures and not regressions and not improvements
    basis = "matches the expected verdicts" if section is not None else "no expected verdicts to compare with"
    if ok and not problems:
        print(f"{mode}: PASS ({len(table)} cases; {basis})")
        return 0
    print(f"{mode}: FAIL ({len(failures)} non-conformant in groups 1-10, "
          f"{len(regressions)} regressed, {len(improvements)} improved"
          + (f", {len(problems)} run error(s)" if problems else "") + ")")
    return 1 if not ok else 2


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-i", "--include", action="append", metavar="CASE",
                        help="case id or glob to run (repeatable; default: the whole suite)")
    common.add_argument("-x", "--exclude", action="append", metavar="CASE",
                        help="case id or glob to leave out (repeatable)")
    common.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                        help="bound on the whole run of the cases (default: 900)")
    common.add_argument("--expected", type=Path, default=DEFAULT_EXPECTED,
                        help=f"expected verdicts file (default: {DEFAULT_EXPECTED.relative_to(HERE.parent)})")
    common.add_argument("--update-expected", action="store_true",
                        help="rewrite this mode's section of the expected file from this run "
                             "(with -i/-x: only the cases that ran)")
    common.add_argument("--no-html", action="store_true", help="skip kosoku's html reports")
    common.add_argument("--tls", action="store_true",
                        help="run over TLS through tls_relay.py (reports in reports/<mode>-tls/)")
    s = sub.add_parser("server", parents=[common], help="test `wshub serve` (/echo) as a server")
    s.add_argument("--wshub", required=True, help="path to the wshub binary")
    s.add_argument("--axum-echo", metavar="PATH",
                   help="test this build of examples/axum_echo.rs (an axum route through wshub's "
                        "extractor) instead of `wshub serve`; reports in reports/server-axum/, "
                        "held to the server's expected verdicts")
    s.add_argument("-p", "--concurrency", type=int, default=3, help="cases run in parallel (default: 3)")
    c = sub.add_parser("client", parents=[common], help="test an Autobahn client binary")
    c.add_argument("--client", required=True, help="path to the autobahn client binary")
    args = p.parse_args(argv)
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    if args.tls and args.update_expected:
        p.error("--update-expected takes a run over ws://: the TLS runs are held to the same verdicts")
    if getattr(args, "axum_echo", None) and (args.tls or args.update_expected):
        p.error("--axum-echo runs over ws:// and is held to the server's expected verdicts")
    if getattr(args, "concurrency", 1) < 1:
        p.error("--concurrency must be at least 1")
    return args


async def amain(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    try:
        loop.add_signal_handler(signal.SIGTERM, me.cancel)
    except (NotImplementedError, RuntimeError):
        pass
    outdir = REPORTS / (args.mode + ("-tls" if args.tls else "") + ("-axum" if getattr(args, "axum_echo", None) else ""))
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    problems: list[str] = []  # things that went wrong after the cases ran
    try:
        run = run_server_mode if args.mode == "server" else run_client_mode
        results = await run(args, outdir, problems)
    except HarnessError as e:
        print(f"{args.mode}: ERROR: {e}")
        return 2
    if not results:
        print(f"{args.mode}: ERROR: no case ran (check -i/-x)")
        return 2
    try:
        return check(args, results, outdir, problems)
    except HarnessError as e:
        print(f"{args.mode}: ERROR: {e}")
        return 2


def main() -> None:
    args = parse_args(sys.argv[1:])
    import importlib.util

    if importlib.util.find_spec("kosoku") is None:
        print("kosoku is not installed: pip install -r autobahn/requirements.txt (or use autobahn/run.sh)",
              file=sys.stderr)
        sys.exit(2)
    code = 2
    try:
        code = asyncio.run(amain(args))
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    except asyncio.CancelledError:
        log("terminated")
        code = 143
    except Exception:  # a bug here or in kosoku: say so, still clean up
        import traceback

        traceback.print_exc()
        print(f"{args.mode}: ERROR: the harness crashed (see the traceback above)")
        code = 2
    finally:
        kill_all_children()
        sys.stdout.flush()
        sys.stderr.flush()
    # kosoku's runtime threads may still be winding down; skip interpreter
    # teardown so they can never turn a finished run's status into a crash.
    os._exit(code)


if __name__ == "__main__":
    main()
