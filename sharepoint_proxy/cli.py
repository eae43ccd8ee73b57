"""The command line: serve, check, sync, setup-minio and journal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

from flask import Flask

from .app import create_app
from .config import Config
from .errors import ConfigError
from .logs import configure_logging


def load_config(environ: Mapping[str, str]) -> Config:
    """Read the configuration, or print every problem and exit 2."""
    try:
        return Config.from_env(environ)
    except ConfigError as exc:
        print(f"sharepoint-proxy: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def build_app_from_env(environ: Mapping[str, str]) -> Flask:
    """Build the production app from the environment, stopping the process on bad settings."""
    config = load_config(environ)
    configure_logging(config.log_level, config.log_format)
    try:
        return create_app(config)
    except ConfigError as exc:
        print(f"sharepoint-proxy: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run one command and return its exit status."""
    parser = argparse.ArgumentParser(prog="python -m sharepoint_proxy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the development server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if args.command == "serve":
        app = build_app_from_env(environ)
        app.run(host=args.host, port=args.port, threaded=True)
        return 0
    parser.error(f"unknown command {args.command}")
    return 2
