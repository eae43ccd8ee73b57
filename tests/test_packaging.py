"""Check the deployment files: Dockerfile, docker-compose.yml, .env.example, gunicorn, pins.

No Docker engine runs here: the image and the compose file are checked with hadolint, dclint
and the Compose Specification's schema, plus the contract points the deployment relies on.
"""

from __future__ import annotations

import itertools
import logging
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support.tls import TestPKI

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
GUNICORN_CONF = ROOT / "gunicorn.conf.py"
DCLINT = "dclint@3.1.0"
TOOL_TIMEOUT_SECONDS = 240  # below pytest-timeout's 300 s

# Defaults from DESIGN.md's table that the deployment files must agree with.
DEFAULT_DEADLINE_SECONDS = 45
DEFAULT_WEBHOOK_ID = "SHAREPOINT"


def _shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.is_file():
        pytest.fail(f"{path} is missing: shared/ must sit next to the repository root ({ROOT})")
    return path


def _tool(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: pip install -r requirements-dev.txt")
    return str(path)


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    # Below pytest-timeout, so a slow tool fails with this message, not a stack dump.
    try:
        return subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(command)} did not finish within {TOOL_TIMEOUT_SECONDS} s")


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return document


def _design_variables() -> dict[str, str]:
    """Map each variable of DESIGN.md's Configuration table to its default cell."""
    text = _shared("DESIGN.md").read_text(encoding="utf-8")
    section = re.search(r"^## Configuration.*?$(.*?)^## ", text, re.MULTILINE | re.DOTALL)
    assert section, "DESIGN.md has no '## Configuration' section"
    variables: dict[str, str] = {}
    for line in section.group(1).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0]):
            variables[name] = cells[1]
    assert len(variables) > 10, f"too few variables parsed from DESIGN.md: {sorted(variables)}"
    return variables


def _env_example() -> dict[str, tuple[str, bool]]:
    """Map each KEY of .env.example to (value, is_set); is_set is False when commented out."""
    entries: dict[str, tuple[str, bool]] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"(# )?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            commented, key, value = match.groups()
            if not entries.get(key, ("", False))[1]:
                entries[key] = (value, commented is None)
    return entries


def _images() -> list[tuple[str, str]]:
    """List (where, image) for every service image and every Dockerfile FROM."""
    found = [
        (f"service {name}", service["image"])
        for name, service in _compose()["services"].items()
        if "image" in service
    ]
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", line, re.IGNORECASE)
        if match:
            found.append(("Dockerfile FROM", match.group(1)))
    return found


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, f"not a compose duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def test_compose_file_matches_the_compose_specification() -> None:
    """docker-compose.yml validates against the Compose Specification's JSON schema."""
    schema = _shared("schemas/compose-spec.json")
    result = _run([_tool("check-jsonschema"), "--schemafile", str(schema), str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_passes_dclint() -> None:
    """The dclint linter finds no error in docker-compose.yml."""
    npx = shutil.which("npx")
    if npx is None:
        pytest.fail("npx is missing: install Node.js and npm (apt-get install nodejs npm)")
    result = _run([npx, "--yes", DCLINT, str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    """The hadolint linter reports nothing on the Dockerfile."""
    result = _run([_tool("hadolint"), str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_no_top_level_version() -> None:
    """The compose file has no top-level `version:`, which the Compose Specification dropped."""
    assert "version" not in _compose()


@pytest.mark.parametrize(("where", "image"), _images())
def test_images_are_pinned(where: str, image: str) -> None:
    """Every image names an explicit tag or digest, never `latest`."""
    name = image.rsplit("/", 1)[-1]
    assert "@sha256:" in image or ":" in name, f"{where}: {image} has no tag"
    assert not name.endswith(":latest"), f"{where}: {image} uses latest"


def test_dockerfile_runs_as_fixed_non_root_user() -> None:
    """The image's last USER is uid 10001, the owner the docs tell operators to grant."""
    users = re.findall(r"^\s*USER\s+(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert users, "the Dockerfile sets no USER: the container would run as root"
    assert users[-1].split(":")[0] == "10001"


def test_dockerfile_serves_the_wsgi_app_with_gunicorn_conf() -> None:
    """The image's CMD runs gunicorn with gunicorn.conf.py on sharepoint_proxy.wsgi:app."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert 'CMD ["gunicorn", "--config", "gunicorn.conf.py", "sharepoint_proxy.wsgi:app"]' in text
    assert re.search(r"^HEALTHCHECK .*/healthz", text, re.MULTILINE | re.DOTALL)
    assert re.search(r"^VOLUME .*/var/lib/sharepoint-proxy", text, re.MULTILINE)


def test_env_example_lists_every_configuration_variable() -> None:
    """.env.example mentions each variable of DESIGN.md's configuration table."""
    entries = _env_example()
    missing = sorted(set(_design_variables()) - set(entries))
    assert not missing, f".env.example lacks {missing}"


def test_env_example_sets_every_required_variable() -> None:
    """Required variables are set (not commented out) with a non-empty placeholder."""
    entries = _env_example()
    required = [name for name, default in _design_variables().items() if default == "required"]
    assert required
    for name in required:
        value, is_set = entries.get(name, ("", False))
        assert is_set, f"{name} is required: set it (uncommented) in .env.example"
        assert value, f"{name} is required: give it a placeholder in .env.example"


def test_env_example_defines_what_compose_interpolates() -> None:
    """Every ${VAR} in docker-compose.yml appears in .env.example."""
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text(encoding="utf-8")))
    missing = sorted(used - set(_env_example()))
    assert not missing, f"docker-compose.yml uses {missing}, which .env.example does not show"


def test_minio_webhook_targets_the_proxy_with_the_shared_secret() -> None:
    """MinIO's webhook target posts to the proxy's /s3event with WEBHOOK_SECRET, queued on disk."""
    environment = _compose()["services"]["minio"]["environment"]
    suffix = f"_{DEFAULT_WEBHOOK_ID}"
    assert environment[f"MINIO_NOTIFY_WEBHOOK_ENABLE{suffix}"] == "on"
    assert environment[f"MINIO_NOTIFY_WEBHOOK_ENDPOINT{suffix}"] == "http://proxy:8080/s3event"
    assert environment[f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN{suffix}"].startswith("${WEBHOOK_SECRET")
    assert environment[f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR{suffix}"].startswith("/")


def test_proxy_and_setup_wait_for_a_healthy_minio() -> None:
    """The proxy and the one-shot setup start once MinIO is healthy; setup is not restarted."""
    services = _compose()["services"]
    assert "healthcheck" in services["minio"]
    for name in ("proxy", "setup"):
        assert services[name]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["setup"]["command"] == [
        "python",
        "-m",
        "sharepoint_proxy",
        "setup-minio",
    ]
    assert services["setup"]["restart"] == "no"


def test_proxy_stop_grace_outlasts_gunicorn_graceful_timeout() -> None:
    """Docker waits longer than gunicorn's graceful_timeout before it kills the proxy."""
    settings = runpy.run_path(str(GUNICORN_CONF))
    grace = _seconds(_compose()["services"]["proxy"]["stop_grace_period"])
    assert grace > settings["graceful_timeout"]


def test_gunicorn_conf_does_not_preload_and_outlasts_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gunicorn.conf.py forks before loading the app and its timeout exceeds the 45 s deadline."""
    for name in (
        "RESPONSE_DEADLINE_SECONDS",
        "PORT",
        "WEB_CONCURRENCY",
        "GUNICORN_THREADS",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = runpy.run_path(str(GUNICORN_CONF))
    assert not settings.get("preload_app", False)
    assert settings["timeout"] > DEFAULT_DEADLINE_SECONDS
    assert settings["worker_class"] == "gthread"
    assert settings["bind"] == "0.0.0.0:8080"


def test_gunicorn_conf_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """PORT, WEB_CONCURRENCY, GUNICORN_THREADS and RESPONSE_DEADLINE_SECONDS shape gunicorn."""
    monkeypatch.setenv("PORT", "9090")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_THREADS", "4")
    monkeypatch.setenv("RESPONSE_DEADLINE_SECONDS", "50")
    settings = runpy.run_path(str(GUNICORN_CONF))
    assert settings["bind"] == "0.0.0.0:9090"
    assert (settings["workers"], settings["threads"]) == (3, 4)
    assert settings["timeout"] > 50


@pytest.fixture
def service_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], pki: TestPKI
) -> Iterator[None]:
    """Give this process the service's settings, as gunicorn's master has them (its start
    hook checks them, the certificate and the library before anything else); put back the
    logging set-up the hook replaces."""
    for name, value in {**env, "REQUESTS_CA_BUNDLE": str(pki.ca_path)}.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("service_environment")
def test_gunicorn_hooks_work_without_multiprocess_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR the start and child-exit hooks do nothing and succeed."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings = runpy.run_path(str(GUNICORN_CONF))
    settings["on_starting"](None)
    settings["child_exit"](None, type("Worker", (), {"pid": 12345})())


@pytest.mark.usefixtures("service_environment")
def test_gunicorn_hooks_manage_multiprocess_metric_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The start hook clears stale metric files; child_exit drops a dead worker's live gauges."""
    metrics = tmp_path / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics))
    settings = runpy.run_path(str(GUNICORN_CONF))
    settings["on_starting"](None)
    assert metrics.is_dir()
    (metrics / "counter_1.db").write_bytes(b"")
    (metrics / "gauge_livesum_4242.db").write_bytes(b"")
    settings["child_exit"](None, type("Worker", (), {"pid": 4242})())
    assert not (metrics / "gauge_livesum_4242.db").exists()
    settings["on_starting"](None)
    assert not list(metrics.glob("*.db"))


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_requirements_are_pinned(name: str) -> None:
    """Each requirement line pins one exact version with ==."""
    for raw in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "-r ")):
            continue
        assert re.fullmatch(r"[A-Za-z0-9_.-]+(\[[a-z,]+\])?==[A-Za-z0-9_.]+", line), line


def test_runtime_requirements_say_why() -> None:
    """Each runtime pin has a comment line above it that says why the package is there."""
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    for before, line in itertools.pairwise(lines):
        if line.strip() and not line.startswith("#"):
            assert before.startswith("# "), f"{line} has no comment above it"


def test_docker_context_leaves_out_secrets() -> None:
    """.dockerignore keeps certs/ and .env out of the image's build context."""
    rules = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in rules, ".dockerignore should exclude everything, then allow what the image needs"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"requirements.txt", "gunicorn.conf.py", "sharepoint_proxy"}
