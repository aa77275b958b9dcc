"""``python -m manager --backend tcp://host:port --server-key FILE [...]`` runs the daemon;
``python -m manager keys generate DIR [--name NAME] [--force]`` writes a CURVE key pair."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import signal
import sys
from pathlib import Path

from manager import keys
from manager.daemon import main
from manager.settings import Settings


def keys_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m manager keys")
    sub = p.add_subparsers(dest="action", required=True)
    g = sub.add_parser("generate", help="write NAME.key (public) and NAME.key_secret (0600)")
    g.add_argument("directory", type=Path)
    g.add_argument("--name", default="manager")
    g.add_argument("--force", action="store_true", help="replace an existing pair")
    ns = p.parse_args(argv)
    try:
        public, secret = keys.generate(ns.directory, ns.name, force=ns.force)
    except (OSError, ValueError) as e:
        print(f"python -m manager keys: {e}", file=sys.stderr)
        return 1
    print(f"public key: {public}  (enroll it on the backend)\nsecret key: {secret}")
    return 0


def run(argv: list[str]) -> int:
    if argv[:1] == ["keys"]:
        return keys_command(argv[1:])
    settings = Settings.from_args(argv)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger(__name__).info("settings: %s", settings)
    # `kill -USR1 <pid>` prints every thread's Python stack to stderr: where a daemon that
    # does not stop is waiting, without stopping it
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        asyncio.run(main(settings))
    except (RuntimeError, OSError) as e:  # another manager holds the runtime dir, not root
        logging.getLogger(__name__).error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
