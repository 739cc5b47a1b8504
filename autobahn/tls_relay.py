#!/usr/bin/env python3
"""A TCP relay that adds or removes one TLS layer, so kosoku (plain ws:// only)
can run the Autobahn cases against wshub over TLS. Bytes pass unchanged, in
order, both ways; each side's end (EOF) is passed on to the other side.

  tls_relay.py to-tls   --target HOST:PORT --ca CA.pem
      Listens in plain TCP; each connection is relayed over a new TLS
      connection to TARGET, verified against CA.pem (server name: TARGET's
      host). Server role: kosoku's fuzzingclient -> relay -> `wshub serve
      --tls-cert ... --tls-key ...`, so wshub's server side runs over TLS.

  tls_relay.py from-tls --target HOST:PORT --cert CERT.pem --key KEY.pem
      Listens in TLS with CERT/KEY; each connection is relayed in plain TCP to
      TARGET. Client role: the wshub Autobahn client (given wss://relay) ->
      relay -> kosoku's fuzzingserver, so wshub's client side runs over TLS.

Listens on 127.0.0.1:0 and prints `listening on ws://127.0.0.1:PORT` (to-tls)
or `listening on wss://127.0.0.1:PORT` (from-tls) once ready, as `wshub serve`
does. Runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies until EOF, then passes the EOF on: a half-close where the
    transport has one (plain TCP), else a close (TLS: close_notify)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()
    except (ConnectionError, ssl.SSLError, OSError):
        writer.close()


async def relay(args: argparse.Namespace, client_ssl: ssl.SSLContext | None,
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    host, port = args.target.rsplit(":", 1)
    try:
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), ssl=client_ssl,
                                    server_hostname=host if client_ssl else None),
            10,
        )
    except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:
        print(f"tls_relay: cannot reach {args.target}: {e!r}", file=sys.stderr, flush=True)
        writer.close()
        return
    try:
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    finally:
        for w in (writer, up_writer):
            w.close()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["to-tls", "from-tls"])
    p.add_argument("--target", required=True, metavar="HOST:PORT")
    p.add_argument("--ca", help="to-tls: CA certificate (PEM) the target is verified against")
    p.add_argument("--cert", help="from-tls: certificate chain (PEM) shown to clients")
    p.add_argument("--key", help="from-tls: its private key (PEM)")
    args = p.parse_args()
    server_ssl = client_ssl = None
    if args.mode == "to-tls":
        if not args.ca:
            p.error("to-tls needs --ca")
        client_ssl = ssl.create_default_context(cafile=args.ca)
    else:
        if not (args.cert and args.key):
            p.error("from-tls needs --cert and --key")
        server_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ssl.load_cert_chain(args.cert, args.key)
    server = await asyncio.start_server(
        lambda r, w: relay(args, client_ssl, r, w), "127.0.0.1", 0, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]
    scheme = "ws" if args.mode == "to-tls" else "wss"
    print(f"listening on {scheme}://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
