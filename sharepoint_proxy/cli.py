"""The command line: serve, check, sync, setup-minio and journal.

Exit status: 0 done, 1 a check or an operation failed, 2 bad usage or bad settings.
Results go to stdout, errors to stderr; no secret is ever printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from flask import Flask
from minio.helpers import check_bucket_name

from .app import Services, create_app
from .checks import run_checks
from .config import Config
from .errors import ConfigError, JournalError, PermanentError, ProxyError
from .journal import Journal, WorkItem
from .logs import configure_logging
from .minio_source import MinioSource
from .setup_minio import EVENTS, bind_bucket, webhook_arn
from .startup import JOURNAL_FILE

PROG = "python -m sharepoint_proxy"
OK, FAILED, USAGE = 0, 1, 2


def load_config(environ: Mapping[str, str]) -> Config:
    """Read the configuration, or print every problem and exit 2."""
    try:
        return Config.from_env(environ)
    except ConfigError as exc:
        _error(str(exc))
        raise SystemExit(USAGE) from exc


def build_app_from_env(environ: Mapping[str, str]) -> Flask:
    """Build the production app from the environment, stopping the process on bad settings."""
    config = load_config(environ)
    configure_logging(config.log_level, config.log_format, stream=sys.stdout)
    try:
        return create_app(config)
    except ConfigError as exc:
        _error(str(exc))
        raise SystemExit(USAGE) from exc
    except JournalError as exc:  # STATE_DIR missing, unwritable or full: say so, no traceback
        _error(f"STATE_DIR: {exc}")
        raise SystemExit(FAILED) from exc  # may pass (a full disk, a long lock): not a setting


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run one command and return its exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or bad usage (2), message already printed
        return exc.code if isinstance(exc.code, int) else USAGE
    commands: dict[str, Callable[[], int]] = {
        "serve": lambda: serve(environ, host=args.host, port=args.port),
        "check": lambda: check(environ),
        "setup-minio": lambda: setup_minio(load_config(environ), args.buckets),
        "journal": lambda: journal(load_config(environ), args),
        "sync": lambda: sync(load_config(environ), args),
    }
    try:
        return commands[args.command]()
    except SystemExit as exc:  # load_config: bad settings, already printed
        return exc.code if isinstance(exc.code, int) else USAGE


def serve(environ: Mapping[str, str], *, host: str, port: int) -> int:
    """Run Flask's development server (production runs gunicorn on `sharepoint_proxy.wsgi:app`)."""
    app = build_app_from_env(environ)
    app.run(host=host, port=port, threaded=True)
    return OK


# -- check ----------------------------------------------------------------------------------------


def check(environ: Mapping[str, str]) -> int:
    """Print one line per check, with what to fix under each failure; 1 if any failed, 2 on bad settings."""
    failed = 0
    settings_ok = True
    with _quiet_library_logs():
        for result in run_checks(environ):
            label = "skip" if result.skipped else "ok" if result.ok else "FAIL"
            print(f"{label:<4}  {result.name:<12} {result.detail}")
            for problem in result.problems:
                print(f"{'':<4}  {'':<12}   {problem}")
            if result.fix and not result.ok:
                print(f"{'':<4}  {'':<12} fix: {result.fix}")
            if not result.ok and not result.skipped:
                failed += 1
                settings_ok = settings_ok and result.name != "settings"
    if failed:
        print(f"{failed} check(s) failed")
        return FAILED if settings_ok else USAGE
    print("all checks passed")
    return OK


# -- setup-minio ----------------------------------------------------------------------------------


def setup_minio(config: Config, named: Sequence[str]) -> int:
    """Create each bucket if missing and bind its object events to MinIO's webhook target."""
    buckets = list(named) or list(config.buckets)
    if not buckets:
        _error("no bucket to set up: name one (setup-minio BUCKET ...) or set BUCKETS")
        return USAGE
    for bucket in buckets:
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError as exc:
            _error(f"{exc} (S3 bucket names: 3-63 characters, a-z 0-9 . -)")
            return USAGE
    arn = webhook_arn(config.minio_webhook_id)
    client = MinioSource.from_config(config).client
    status = OK
    with _quiet_library_logs():
        for bucket in buckets:
            try:
                binding = bind_bucket(client, bucket, arn=arn)
            except PermanentError as exc:
                if exc.reason == "webhook_target_missing":
                    _error(_target_missing_help(config, arn, str(exc)))
                    return FAILED  # every other bucket would be refused the same way
                _error(f"{bucket}: {exc}")
                status = FAILED
                continue
            except ProxyError as exc:
                _error(f"{bucket}: {exc}; check MINIO_ENDPOINT ({config.minio_endpoint})")
                status = FAILED
                continue
            created = "created, " if binding.created else ""
            kept = f"; {binding.kept} other rule(s) kept" if binding.kept else ""
            if binding.changed:
                print(f"{bucket}: {created}bound {', '.join(EVENTS)} to {arn}{kept}")
            else:
                print(f"{bucket}: {created}already bound to {arn}; nothing changed{kept}")
    return status


def _target_missing_help(config: Config, arn: str, message: str) -> str:
    target = config.minio_webhook_id
    return (
        f"{message}\n"
        f"  MinIO has no webhook target with id {target!r}. Configure it on the MinIO server and restart "
        "MinIO, for instance:\n"
        f"    MINIO_NOTIFY_WEBHOOK_ENABLE_{target}=on\n"
        f"    MINIO_NOTIFY_WEBHOOK_ENDPOINT_{target}=http://proxy:8080/s3event\n"
        f"    MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{target}=<WEBHOOK_SECRET>\n"
        f"    MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{target}=/notify-queue\n"
        f"  or: mc admin config set ALIAS notify_webhook:{target} endpoint=... auth_token=... queue_dir=...\n"
        "      mc admin service restart ALIAS\n"
        f"  MINIO_WEBHOOK_ID ({target!r}) must equal that suffix, case included; "
        "`mc admin config get ALIAS notify_webhook` lists the targets MinIO has."
    )


# -- journal --------------------------------------------------------------------------------------


def journal(config: Config, args: argparse.Namespace) -> int:
    """List pending work and dead letters, or retry or drop dead letters (no network needed)."""
    path = config.state_dir / JOURNAL_FILE
    if not path.exists():
        message = f"no journal at {path}: nothing was journaled here (is STATE_DIR right?)"
        if args.action in (None, "list"):
            print(message)
            return OK
        _error(message)
        return FAILED
    try:
        store = Journal(path)
        if args.action in (None, "list"):
            _print_journal(store.items())
            return OK
        if args.action == "retry":
            return _retry(store, args.id)
        return _drop(store, args.id)
    except ProxyError as exc:
        _error(str(exc))
        return FAILED


def _print_journal(items: list[WorkItem], *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    if not items:
        print("nothing pending, no dead letters")
        return
    rows = [("ID", "STATE", "ATTEMPTS", "DUE", "ACTION", "OBJECT", "LAST ERROR")]
    for item in items:
        if item.state == "dead":
            due = "-"
        elif item.state == "running":
            due = "running"
        else:
            due = "now" if item.due_at <= now else _utc(item.due_at)
        error = " ".join((item.last_error or "").split())
        rows.append((str(item.id), item.state, str(item.attempts), due, item.record.action.value,
                     f"{item.record.bucket}/{item.record.key}", error))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    counts = {state: sum(1 for i in items if i.state == state) for state in ("pending", "running", "dead")}
    print(f"{counts['pending']} pending, {counts['running']} running, {counts['dead']} dead letter(s)")


def _retry(store: Journal, item_id: int | None) -> int:
    count = store.retry(item_id)
    if item_id is None:
        print(f"{count} dead letter(s) queued again; the running service retries them within seconds")
        return OK
    if not count:
        _error(f"no dead letter or pending item {item_id} (see `{PROG} journal list`)")
        return FAILED
    print(f"item {item_id} queued again; the running service retries it within seconds")
    return OK


def _drop(store: Journal, item_id: int | None) -> int:
    count = store.drop(item_id)
    if item_id is None:
        print(f"{count} dead letter(s) dropped")
        return OK
    if not count:
        _error(f"no dead letter {item_id}: only dead letters can be dropped (see `{PROG} journal list`)")
        return FAILED
    print(f"dead letter {item_id} dropped")
    return OK


def _utc(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(moment))


# -- sync -----------------------------------------------------------------------------------------


def sync(config: Config, args: argparse.Namespace) -> int:
    """Reconcile SharePoint with the buckets; print the summary; 1 if anything failed or was refused."""
    from .sync import run_sync  # noqa: PLC0415 - sync pulls in tqdm; other commands need not

    buckets = list(args.buckets) or list(config.buckets)
    if not buckets:
        _error("no bucket to sync: name one (sync BUCKET ...) or set BUCKETS")
        return USAGE
    configure_logging(config.log_level, config.log_format)
    try:
        services = Services.from_config(config)
    except ConfigError as exc:
        _error(str(exc))
        return USAGE
    except ProxyError as exc:
        _error(str(exc))
        return FAILED
    try:
        report = run_sync(
            services,
            buckets,
            delete=args.delete,
            dry_run=args.dry_run,
            force=args.force,
            transfers=args.transfers,
            progress=sys.stderr.isatty(),
        )
    except ConfigError as exc:
        _error(str(exc))
        return USAGE
    except ProxyError as exc:
        _error(f"sync stopped: {exc}")
        return FAILED
    finally:
        services.close()
    print(report.summary())
    return OK if report.ok else FAILED


# -- plumbing -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Mirror MinIO buckets into a SharePoint library.",
        epilog="Exit status: 0 done, 1 a check or an operation failed, 2 bad usage or bad settings.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the development server (production: gunicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    commands.add_parser(
        "check", help="check settings, certificate, token, library, MinIO and buckets; say what to fix"
    )

    setup = commands.add_parser(
        "setup-minio", help="create buckets and bind their events to MinIO's webhook target"
    )
    setup.add_argument("buckets", nargs="*", metavar="BUCKET", help="default: BUCKETS")

    sync = commands.add_parser("sync", help="reconcile SharePoint with MinIO")
    sync.add_argument("buckets", nargs="*", metavar="BUCKET", help="default: BUCKETS")
    sync.add_argument("--delete", action="store_true", help="delete SharePoint files not in MinIO")
    sync.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    sync.add_argument(
        "--force", action="store_true", help="delete even when more than 10%% of the files would go"
    )
    sync.add_argument("--transfers", type=_positive, default=4, metavar="N", help="parallel transfers (4)")

    journal = commands.add_parser("journal", help="list pending work and dead letters; retry or drop them")
    actions = journal.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list pending work and dead letters (the default)")
    retry = actions.add_parser("retry", help="queue a dead letter (or --all of them) again")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, metavar="ID")
    which.add_argument("--all", dest="all", action="store_true", help="every dead letter")
    drop = actions.add_parser("drop", help="forget a dead letter (or --all-dead)")
    which = drop.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, metavar="ID")
    which.add_argument("--all-dead", dest="all", action="store_true", help="every dead letter")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {text})")
    return value


def _error(message: str) -> None:
    print(f"sharepoint-proxy: {message}", file=sys.stderr)


@contextmanager
def _quiet_library_logs() -> Iterator[None]:
    """Keep log lines (ours, urllib3's retries) off the terminal while a command prints its own."""
    loggers = [logging.getLogger(name) for name in ("sharepoint_proxy", "urllib3", "msal")]
    handler = logging.NullHandler()
    saved = [(logger, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
