"""``python -m fake_riva --port N``: run the fake Riva ASR server until interrupted."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from fake_riva.recognizers import RECOGNIZERS
from fake_riva.server import FakeRiva


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake_riva", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--recognizer", choices=RECOGNIZERS, default="scripted")
    parser.add_argument("--max-streams", type=int, default=512)
    parser.add_argument(
        "--fault", action="append", default=[], metavar="KEY=VALUE", help="server-wide fault, e.g. fake.stall=true"
    )
    parser.add_argument(
        "--custom",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="server-wide custom_configuration default, e.g. fake.transcript=hello (clients that cannot send one)",
    )
    parser.add_argument(
        "--aio", action="store_true", help="serve streams as coroutines on grpc.aio (load tests; no faults)"
    )
    args = parser.parse_args(argv)
    faults = dict(item.split("=", 1) for item in args.fault)
    custom = dict(item.split("=", 1) for item in args.custom)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.aio:
        if faults or custom:
            parser.error("--aio takes no --fault or --custom")
        from fake_riva.aio_server import run

        run(args.recognizer, args.host, args.port, args.max_streams)
        return 0
    server = FakeRiva(
        recognizer=args.recognizer,
        host=args.host,
        port=args.port,
        max_streams=args.max_streams,
        faults=faults,
        custom_defaults=custom,
    )
    server.start()
    print(f"fake_riva ready on {server.target}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
