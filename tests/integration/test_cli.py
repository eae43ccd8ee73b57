"""The operator's commands (check, setup-minio, journal, sync) against the real local servers."""

from __future__ import annotations

import datetime
import io
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import hashes
from minio.notificationconfig import NotificationConfig, PrefixFilterRule, QueueConfig, SuffixFilterRule

from sharepoint_proxy.checks import check_certificate
from sharepoint_proxy.cli import main
from sharepoint_proxy.events import Record, classify
from sharepoint_proxy.journal import Journal
from sharepoint_proxy.setup_minio import CONFIG_ID, EVENTS, bind_bucket

if TYPE_CHECKING:
    from minio import Minio

    from sharepoint_proxy.config import Config
    from tests.support.graph import FakeDrive
    from tests.support.s3 import S3Server
    from tests.support.tls import ClientCredential, TestPKI

REPO = Path(__file__).resolve().parents[2]
# moto only stores notification targets in AWS form (arn:<aws partition>:sqs:<bucket region>:...);
# it refuses MinIO's arn:minio:sqs::ID:webhook with 400 InvalidArgument, as MinIO does for an
# unknown target. The read-modify-write of the rules is therefore pinned with an AWS-form ARN.
AWS_ARN = "arn:aws:sqs:us-east-1:123456789012:sharepoint-proxy"
OTHER_ARN = "arn:aws:sqs:us-east-1:123456789012:audit"


def run(capsys: pytest.CaptureFixture[str], env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    """Run the command line in-process; return (exit status, stdout, stderr)."""
    status = main(list(argv), env)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def free_port() -> int:
    """Return a port of 127.0.0.1 that nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def line_of(output: str, check: str) -> str:
    """Return the line of `check`'s result (the line starting with its status and name)."""
    for line in output.splitlines():
        if line.split()[1:2] == [check] and line.split()[0] in ("ok", "FAIL", "skip"):
            return line
    raise AssertionError(f"no line for {check!r} in:\n{output}")


def record(bucket: str, key: str, event: str = "s3:ObjectCreated:Put") -> Record:
    """Return the record MinIO's event for `bucket`/`key` parses into."""
    return Record(event_name=event, action=classify(event), bucket=bucket, key=key)


@pytest.fixture
def new_bucket(minio_client: Minio) -> Iterator[str]:
    """Return the name of a bucket that does not exist yet; remove it after the test if made."""
    name = f"cli-{uuid.uuid4().hex[:16]}"
    yield name
    if minio_client.bucket_exists(name):
        minio_client.remove_bucket(name)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was after a command that configures logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# -- check ----------------------------------------------------------------------------------------


def test_check_passes_and_prints_the_library_and_thumbprint(
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    drive: FakeDrive,
    bucket: str,
    client_credential: ClientCredential,
) -> None:
    """With every server answering, check exits 0 and prints the drive's id, name, URL and thumbprint."""
    status, out, _ = run(capsys, {**env, "BUCKETS": bucket}, "check")
    assert status == 0, out
    for check in ("settings", "certificate", "token", "library", "minio"):
        assert line_of(out, check).startswith("ok"), out
    library = line_of(out, "library")
    assert drive.id in library
    assert "'Documents'" in library
    assert drive.web_url in library
    thumbprint = client_credential.certificate.fingerprint(hashes.SHA256()).hex().upper()
    assert thumbprint in line_of(out, "certificate")
    assert f"ok    bucket {bucket}" in out
    assert out.rstrip().endswith("all checks passed")


def test_check_runs_as_a_real_process(
    env: dict[str, str], drive: FakeDrive, pki: TestPKI, tmp_path: Path
) -> None:
    """`python -m sharepoint_proxy check` as a process trusts the CA its environment names, and
    exits 0. Run beside the service (`docker compose exec`), it inherits the service's metrics
    directory, and leaves nothing there for the service's /metrics to add up."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    process_env = {
        **env,
        "PATH": os.environ.get("PATH", ""),
        "REQUESTS_CA_BUNDLE": str(pki.ca_path),
        "SSL_CERT_FILE": str(pki.ca_path),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    done = subprocess.run(
        [sys.executable, "-m", "sharepoint_proxy", "check"],
        env=process_env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    library" in done.stdout
    assert drive.id in done.stdout
    assert list(metrics_dir.iterdir()) == []


def test_check_names_the_passphrase_fix_without_printing_it(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], drive: FakeDrive, pki: TestPKI
) -> None:
    """A wrong KEY_PASSPHRASE fails the certificate check, says to fix KEY_PASSPHRASE, skips the token."""
    credential = pki.client_credential("encrypted", passphrase="correct-horse-17")
    bad = {**env, "CERT_PATH": str(credential.cert_path), "KEY_PATH": str(credential.key_path),
           "KEY_PASSPHRASE": "battery-staple-42"}
    status, out, _ = run(capsys, bad, "check")
    assert status == 1
    certificate = line_of(out, "certificate")
    assert certificate.startswith("FAIL")
    assert "wrong passphrase" in certificate
    assert "fix: set KEY_PASSPHRASE" in out
    assert line_of(out, "token").startswith("skip")
    assert line_of(out, "library").startswith("skip")
    assert "correct-horse-17" not in out
    assert "battery-staple-42" not in out


def test_check_says_when_certificate_and_key_do_not_match(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], drive: FakeDrive, pki: TestPKI
) -> None:
    """A certificate paired with another credential's key fails with the fix: use one pair's two halves."""
    first = pki.client_credential("first")
    second = pki.client_credential("second")
    status, out, _ = run(capsys, {**env, "CERT_PATH": str(first.cert_path), "KEY_PATH": str(second.key_path)},
                         "check")
    assert status == 1
    assert "does not match the key" in line_of(out, "certificate")
    assert "fix: point CERT_PATH and KEY_PATH at the two halves of one pair" in out


def test_check_says_to_upload_an_unregistered_certificate(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], drive: FakeDrive, pki: TestPKI
) -> None:
    """A valid pair whose certificate the app registration lacks (AADSTS700027) says to upload it."""
    stranger = pki.client_credential("not-uploaded")
    status, out, _ = run(
        capsys, {**env, "CERT_PATH": str(stranger.cert_path), "KEY_PATH": str(stranger.key_path)}, "check"
    )
    assert status == 1
    assert line_of(out, "certificate").startswith("ok")
    token = line_of(out, "token")
    assert token.startswith("FAIL")
    assert "AADSTS700027" in token
    assert "fix: upload the certificate" in out
    assert "CLIENT_ID" in out
    assert line_of(out, "library").startswith("skip")


def test_check_lists_the_libraries_when_the_library_is_unknown(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], drive: FakeDrive
) -> None:
    """DOCUMENT_LIBRARY=Nope fails the library check, lists the site's libraries and says to pick one."""
    status, out, _ = run(capsys, {**env, "DOCUMENT_LIBRARY": "Nope"}, "check")
    assert status == 1
    library = line_of(out, "library")
    assert library.startswith("FAIL")
    assert "'Nope'" in library
    assert "'Documents'" in library
    assert "'Archiv'" in library
    assert "Shared Documents" in library
    assert "fix: set DOCUMENT_LIBRARY to one of the libraries listed" in out
    assert line_of(out, "minio").startswith("ok")


def test_check_says_when_minio_is_unreachable(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], drive: FakeDrive
) -> None:
    """A MinIO endpoint nobody listens on fails the minio check with the fix naming MINIO_ENDPOINT."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    status, out, err = run(capsys, {**env, "MINIO_ENDPOINT": endpoint, "BUCKETS": "dossier"}, "check")
    assert status == 1
    minio_line = line_of(out, "minio")
    assert minio_line.startswith("FAIL")
    assert endpoint in minio_line
    assert "Connection refused" in minio_line
    assert "fix: check MINIO_ENDPOINT" in out
    assert line_of(out, "bucket").startswith("skip")
    assert line_of(out, "library").startswith("ok")
    assert "Retrying" not in err  # urllib3's retry warnings stay off the terminal


def test_check_says_to_run_setup_minio_for_a_missing_bucket(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], drive: FakeDrive, bucket: str
) -> None:
    """A bucket of BUCKETS that does not exist fails its own line, with setup-minio as the fix."""
    status, out, _ = run(capsys, {**env, "BUCKETS": f"{bucket},missing-{bucket}"}, "check")
    assert status == 1
    assert f"ok    bucket {bucket}" in out
    assert f"FAIL  bucket missing-{bucket}" in out
    assert "setup-minio" in out


def test_check_prints_every_bad_setting_and_exits_2(
    capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    """Invalid settings: one line per bad variable, no other check attempted, exit status 2."""
    bad = {k: v for k, v in env.items() if k not in ("TENANT_ID", "WEBHOOK_SECRET")}
    status, out, _ = run(capsys, {**bad, "UPLOAD_CHUNK_BYTES": "1000"}, "check")
    assert status == 2
    lines = [line.strip() for line in out.splitlines()]
    assert "TENANT_ID: required" in lines
    assert "WEBHOOK_SECRET: required" in lines
    assert any(line.startswith("UPLOAD_CHUNK_BYTES:") for line in lines)
    assert "certificate" not in out


def test_check_fails_a_certificate_outside_its_validity(config: Config) -> None:
    """A certificate past its end date fails its check, with the fix: make and upload a new one."""
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365)
    result, credential = check_certificate(config, now=later)
    assert credential is None
    assert not result.ok
    assert "not valid now" in result.detail
    assert "make a new certificate" in result.fix


# -- setup-minio ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["SHAREPOINT", "Mirror"])
def test_setup_minio_creates_the_bucket_and_explains_a_missing_target(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], minio_client: Minio, new_bucket: str, target: str
) -> None:
    """A refused MinIO ARN (400 InvalidArgument) exits 1 naming the target's variables, case kept."""
    status, out, err = run(capsys, {**env, "MINIO_WEBHOOK_ID": target}, "setup-minio", new_bucket)
    assert status == 1
    assert minio_client.bucket_exists(new_bucket)
    assert f"arn:minio:sqs::{target}:webhook" in err
    assert "InvalidArgument" in err
    assert f"MINIO_NOTIFY_WEBHOOK_ENABLE_{target}=on" in err
    assert "MINIO_WEBHOOK_ID" in err
    assert "case included" in err
    assert env["WEBHOOK_SECRET"] not in out + err


def test_bind_keeps_other_rules_replaces_its_own_and_is_idempotent(
    minio_client: Minio, s3: S3Server, bucket: str
) -> None:
    """Binding writes one whole-bucket rule for both event families, keeps others; a re-run writes nothing."""
    other = QueueConfig(
        queue=OTHER_ARN, events=["s3:ObjectCreated:Put"], config_id="audit",
        prefix_filter_rule=PrefixFilterRule("reports/"), suffix_filter_rule=SuffixFilterRule(".pdf"),
    )
    stale = QueueConfig(queue=AWS_ARN, events=["s3:ObjectCreated:Put"], config_id=CONFIG_ID)
    minio_client.set_bucket_notification(bucket, NotificationConfig(queue_config_list=[other, stale]))

    first = bind_bucket(minio_client, bucket, arn=AWS_ARN)

    assert (first.created, first.changed, first.kept) == (False, True, 1)
    stored = minio_client.get_bucket_notification(bucket)
    by_id = {q.config_id: q for q in stored.queue_config_list}
    assert set(by_id) == {"audit", CONFIG_ID}
    assert by_id["audit"] == other
    ours = by_id[CONFIG_ID]
    assert ours.queue == AWS_ARN
    assert set(ours.events) == set(EVENTS)
    assert ours.prefix_filter_rule is None
    assert ours.suffix_filter_rule is None

    puts = s3.count("PUT")
    second = bind_bucket(minio_client, bucket, arn=AWS_ARN)
    assert (second.created, second.changed) == (False, False)
    assert s3.count("PUT") == puts
    assert minio_client.get_bucket_notification(bucket) == stored


def test_bind_creates_a_missing_bucket(minio_client: Minio, new_bucket: str) -> None:
    """A bucket that does not exist is created, then bound."""
    binding = bind_bucket(minio_client, new_bucket, arn=AWS_ARN)
    assert (binding.created, binding.changed, binding.kept) == (True, True, 0)
    [rule] = minio_client.get_bucket_notification(new_bucket).queue_config_list
    assert rule.queue == AWS_ARN
    assert rule.config_id == CONFIG_ID


@pytest.mark.parametrize(
    ("extra", "argv", "message"),
    [
        ({}, ["setup-minio"], "no bucket to set up"),
        ({}, ["setup-minio", "Bad_Name"], "invalid bucket name"),
        ({"BUCKETS": ""}, ["sync"], "no bucket to sync"),
    ],
    ids=["no-bucket", "bad-name", "sync-no-bucket"],
)
def test_bad_usage_exits_2(
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    extra: dict[str, str],
    argv: list[str],
    message: str,
) -> None:
    """No bucket named nor in BUCKETS, or an invalid bucket name, is bad usage: exit 2, message on stderr."""
    status, out, err = run(capsys, {**env, **extra}, *argv)
    assert status == 2
    assert message in err
    assert out == ""


# -- journal --------------------------------------------------------------------------------------


@pytest.fixture
def journal(env: dict[str, str]) -> Journal:
    """Return the journal the commands read (STATE_DIR of `env`), with three pending records."""
    store = Journal(Path(env["STATE_DIR"]) / "journal.sqlite3")
    store.add([record("dossier", "a.pdf"), record("dossier", "b b.pdf"),
               record("dossier", "c.pdf", "s3:ObjectRemoved:Delete")], claim=False)
    return store


def test_journal_lists_pending_work_and_dead_letters_while_graph_is_unreachable(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], journal: Journal
) -> None:
    """`journal` lists id, state, attempts, due time, object and last error, and needs no network."""
    [a, b, c] = [i.id for i in journal.items()]
    journal.bury(a, "graph_access_denied: Graph refused content with 403")
    journal.postpone(b, "Graph throttled content (429)", retry_after=120)
    offline = {**env, "GRAPH_BASE_URL": f"https://127.0.0.1:{free_port()}/v1.0",
               "AUTHORITY": f"https://127.0.0.1:{free_port()}/t", "MINIO_ENDPOINT": f"http://127.0.0.1:{free_port()}"}

    status, out, _ = run(capsys, offline, "journal")

    assert status == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert rows[str(a)].split()[1:4] == ["dead", "1", "-"]
    assert "dossier/a.pdf" in rows[str(a)]
    assert "Graph refused content with 403" in rows[str(a)]
    assert rows[str(b)].split()[1:3] == ["pending", "1"]
    assert "dossier/b b.pdf" in rows[str(b)]
    assert "Z" in rows[str(b)]
    assert "throttled" in rows[str(b)]
    assert "delete" in rows[str(c)]
    assert "now" in rows[str(c)].split()
    assert out.splitlines()[-1] == "2 pending, 0 running, 1 dead letter(s)"
    assert run(capsys, offline, "journal", "list")[1] == out


def test_journal_retries_one_or_all_dead_letters(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], journal: Journal
) -> None:
    """`retry ID` and `retry --all` make dead letters pending and due now; an unknown id exits 1."""
    [a, b, c] = [i.id for i in journal.items()]
    for item_id in (a, b):
        journal.bury(item_id, "failed")

    assert run(capsys, env, "journal", "retry", str(a))[0] == 0
    assert [i.id for i in journal.items("dead")] == [b]
    item = journal.get(a)
    assert item is not None
    assert item.state == "pending"
    assert item.due_at == 0

    status, out, _ = run(capsys, env, "journal", "retry", "--all")
    assert status == 0
    assert out.startswith("1 dead letter(s) queued again")
    assert journal.items("dead") == []

    status, _, err = run(capsys, env, "journal", "retry", "9999")
    assert status == 1
    assert "no dead letter or pending item 9999" in err
    assert c in [i.id for i in journal.items("pending")]


def test_journal_drops_dead_letters_but_never_pending_work(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], journal: Journal
) -> None:
    """`drop ID` and `drop --all-dead` remove dead letters only; dropping pending work exits 1, keeps it."""
    [a, b, c] = [i.id for i in journal.items()]
    for item_id in (a, b):
        journal.bury(item_id, "failed")

    assert run(capsys, env, "journal", "drop", str(a))[0] == 0
    assert journal.get(a) is None

    status, _, err = run(capsys, env, "journal", "drop", str(c))
    assert status == 1
    assert "only dead letters can be dropped" in err
    assert journal.get(c) is not None

    status, out, _ = run(capsys, env, "journal", "drop", "--all-dead")
    assert status == 0
    assert out.strip() == "1 dead letter(s) dropped"
    assert [i.id for i in journal.items()] == [c]


def test_journal_without_a_journal_file_says_so_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    """With no journal under STATE_DIR, listing says so (exit 0) and retrying exits 1; no file appears."""
    status, out, _ = run(capsys, env, "journal")
    assert status == 0
    assert "no journal at" in out
    assert run(capsys, env, "journal", "retry", "--all")[0] == 1
    assert not (Path(env["STATE_DIR"]) / "journal.sqlite3").exists()


@pytest.mark.parametrize("argv", [["journal", "retry"], ["journal", "drop", "1", "--all-dead"], ["nope"]])
def test_journal_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], argv: list[str]
) -> None:
    """`retry`/`drop` need exactly one of ID or --all(-dead); unknown commands are bad usage too."""
    status, _, err = run(capsys, env, *argv)
    assert status == 2
    assert "usage:" in err


# -- sync -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
def test_sync_dry_run_prints_the_plan_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    drive: FakeDrive,
    minio_client: Minio,
    bucket: str,
) -> None:
    """`sync BUCKET --dry-run` prints what it would upload and the summary, exits 0, writes nothing."""
    minio_client.put_object(bucket, "dossier/a.txt", io.BytesIO(b"hello"), 5)
    status, out, _ = run(capsys, env, "sync", bucket, "--dry-run")
    assert status == 0, out
    assert f"{bucket}/dossier/a.txt" in out
    assert "(dry run)" in out
    assert drive.files() == {}
