"""The deployment files, checked without building anything (no container daemon here).

app.json (the Heroku button; Dokku and Scalingo read it too), docker-compose.yml, the
Dockerfile with its entrypoint and healthcheck, and the systemd units must agree with the
code: the variables it reads, the settings it requires, the Procfile's processes.
`hadolint` lints the Dockerfile itself in `.ci/run`.
"""

from __future__ import annotations

import copy
import fnmatch
import http.server
import importlib.util
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from worker.core.settings import MIN_SECRET_KEY_BYTES, Settings

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"

# Heroku's app.json schema (devcenter "app.json Schema"): its top-level keys, and the
# keys of an `env` entry. Dokku and Scalingo read a subset of the same format.
APP_JSON_KEYS = {
    "name",
    "description",
    "keywords",
    "website",
    "repository",
    "logo",
    "success_url",
    "scripts",
    "env",
    "formation",
    "image",
    "addons",
    "buildpacks",
    "environments",
    "stack",
}
ENV_ENTRY_KEYS = {"description", "value", "required", "generator"}
# Set by the platform or its add-ons: app.json must not set them (a PORT of its own would
# break Heroku's router; DATABASE_URL and REDIS_URL come with the add-ons' credentials).
PLATFORM_SET = {"PORT", "DATABASE_URL", "REDIS_URL"}
# What Heroku's add-ons give a new app (postgres:// is accepted as is by Settings).
HEROKU_ADDON_ENV = {
    "DATABASE_URL": "postgres://user:password@db.example.com:5432/callhook",
    # Heroku's Key-Value Store: TLS with a self-signed certificate.
    "REDIS_URL": "rediss://default:password@redis.example.com:6380",
    "PORT": "31337",
}


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def variables_the_code_reads() -> set[str]:
    """Every environment variable callhook reads, from the code itself."""
    from webhook_receiver.mapping import load_mappings

    names = {name.upper() for name in Settings.model_fields}
    for mapping in load_mappings(ROOT / "mappings").platforms.values():
        names.update(mapping.auth.secret_envs)
    gunicorn_conf = (ROOT / "webhook_receiver" / "web" / "gunicorn_conf.py").read_text()
    names.update(re.findall(r"os\.environ\.get\(\s*['\"](\w+)['\"]", gunicorn_conf))
    names.update(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", (ROOT / "Procfile").read_text()))
    return names


def webhook_secret_names() -> set[str]:
    """Each shipped platform's webhook secret (the first `secret_env`; others rotate)."""
    from webhook_receiver.mapping import load_mappings

    platforms = load_mappings(ROOT / "mappings").platforms.values()
    return {m.auth.secret_envs[0] for m in platforms if m.auth.secret_envs}


def settings_from(env: dict[str, str]) -> Settings:
    """Settings as a process whose environment holds exactly `env` would read them."""
    fields = {name.upper() for name in Settings.model_fields}
    with mock.patch.dict(os.environ):
        for name in [n for n in os.environ if n.upper() in fields]:
            del os.environ[name]
        os.environ.update(env)
        return Settings()


def app_json_problems(data: Any) -> list[str]:
    """What is wrong with an app.json document (an empty list: nothing)."""
    if not isinstance(data, dict):
        return ["app.json: not an object"]
    problems = [f"unknown top-level key {k!r}" for k in sorted(set(data) - APP_JSON_KEYS)]
    name = data.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 30:
        problems.append("name: a string of 1 to 30 characters")
    if not isinstance(data.get("description"), str) or not data["description"].strip():
        problems.append("description: missing")
    elif "release" not in data["description"]:
        problems.append("description: must say the Procfile's release phase runs")

    # -- env ------------------------------------------------------------------------
    env = data.get("env")
    if not isinstance(env, dict) or not env:
        return [*problems, "env: missing"]
    known = variables_the_code_reads()
    for var, entry in env.items():
        if var not in known:
            problems.append(
                f"env {var}: callhook never reads it (not a Settings field, a mapping's "
                "secret_env, nor a variable of gunicorn_conf.py or the Procfile)"
            )
        if var in PLATFORM_SET:
            problems.append(f"env {var}: set by the platform or an add-on, not app.json")
        if not isinstance(entry, dict):
            problems.append(f"env {var}: an object with a description, not {entry!r}")
            continue
        if unknown := set(entry) - ENV_ENTRY_KEYS:
            problems.append(f"env {var}: unknown keys {sorted(unknown)}")
        if not isinstance(entry.get("description"), str) or not entry["description"].strip():
            problems.append(f"env {var}: no description")
        if "generator" in entry and entry["generator"] != "secret":
            problems.append(f"env {var}: generator must be 'secret'")
        if "value" in entry and not isinstance(entry["value"], str):
            problems.append(f"env {var}: value must be a string")
        if "required" in entry and not isinstance(entry["required"], bool):
            problems.append(f"env {var}: required must be true or false")
    for var in sorted(webhook_secret_names() - set(env)):
        problems.append(f"env {var}: a shipped platform's webhook secret is not offered")

    # Every required setting: fields without a default, and what a deployment on a
    # server database needs (SECRET_KEY). A deploy with only app.json's values (Heroku's
    # secret generator gives 64 hex characters) and the add-ons' variables must start.
    for field, info in Settings.model_fields.items():
        if info.is_required() and field.upper() not in env:
            problems.append(f"env {field.upper()}: a required setting is missing")
    deploy_env = dict(HEROKU_ADDON_ENV)
    for var, entry in env.items():
        if not isinstance(entry, dict):
            continue
        if entry.get("generator") == "secret":
            deploy_env[var] = secrets.token_hex(32)
        elif isinstance(entry.get("value"), str):
            deploy_env[var] = entry["value"]
    try:
        settings_from(deploy_env)
    except Exception as exc:
        problems.append(f"a deploy with app.json's values does not start: {exc}")

    # -- add-ons, buildpacks, formation -------------------------------------------------
    plans = []
    for addon in data.get("addons", []):
        plan = addon.get("plan") if isinstance(addon, dict) else addon
        if not isinstance(plan, str) or not plan:
            problems.append(f"addons: {addon!r} names no plan")
        else:
            plans.append(plan.split(":")[0])
    for needed in ("heroku-postgresql", "heroku-redis"):
        if needed not in plans:
            problems.append(f"addons: {needed} missing")
    urls = [b.get("url") for b in data.get("buildpacks", []) if isinstance(b, dict)]
    if "heroku/python" not in urls:
        problems.append("buildpacks: heroku/python missing")
    processes = set(procfile()) - {"release"}
    formation = data.get("formation", {})
    for process, spec in formation.items():
        if process not in processes:
            problems.append(f"formation {process}: no such process in the Procfile")
        if not isinstance(spec, dict) or not isinstance(spec.get("quantity"), int):
            problems.append(f"formation {process}: needs an integer quantity")
    for process in ("web", "worker"):
        if (
            not isinstance(formation.get(process), dict)
            or formation[process].get("quantity", 0) < 1
        ):
            problems.append(f"formation {process}: must run (quantity 1 or more)")
    return problems


def app_json() -> dict[str, Any]:
    return json.loads((ROOT / "app.json").read_text())


# -- app.json -------------------------------------------------------------------------
def test_app_json_is_valid_and_matches_the_code() -> None:
    assert app_json_problems(app_json()) == []


def _unknown_variable(d: dict) -> None:
    d["env"]["NOT_A_CALLHOOK_SETTING"] = {"description": "nothing reads it", "required": False}


def _misspelled_variable(d: dict) -> None:
    d["env"]["HUBSPOT_TOKEN"] = d["env"].pop("HUBSPOT_ACCESS_TOKEN")


def _no_secret_key(d: dict) -> None:
    del d["env"]["SECRET_KEY"]


def _short_secret_key(d: dict) -> None:
    d["env"]["SECRET_KEY"] = {"description": "too short", "value": "x" * 16}


def _bad_region(d: dict) -> None:
    d["env"]["DEFAULT_REGION"]["value"] = "XX"


def _no_description(d: dict) -> None:
    d["env"]["DEFAULT_REGION"] = {"value": "US"}


def _port(d: dict) -> None:
    d["env"]["PORT"] = {"description": "the router's", "value": "5000"}


def _unknown_key(d: dict) -> None:
    d["healthcheck"] = "/healthz"


def _unknown_process(d: dict) -> None:
    d["formation"]["scheduler"] = {"quantity": 1}


def _no_worker(d: dict) -> None:
    d["formation"]["worker"]["quantity"] = 0


def _no_redis(d: dict) -> None:
    d["addons"] = [a for a in d["addons"] if "redis" not in json.dumps(a)]


def _missing_platform_secret(d: dict) -> None:
    del d["env"]["KAZOO_WEBHOOK_SECRET"]


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (_unknown_variable, "env NOT_A_CALLHOOK_SETTING: callhook never reads it"),
        (_misspelled_variable, "env HUBSPOT_TOKEN: callhook never reads it"),
        (_no_secret_key, "SECRET_KEY must be set"),
        (_short_secret_key, f"at least {MIN_SECRET_KEY_BYTES} bytes"),
        (_bad_region, "'XX' is not an ISO 3166 country code"),
        (_no_description, "env DEFAULT_REGION: no description"),
        (_port, "env PORT: set by the platform"),
        (_unknown_key, "unknown top-level key 'healthcheck'"),
        (_unknown_process, "formation scheduler: no such process"),
        (_no_worker, "formation worker: must run"),
        (_no_redis, "addons: heroku-redis missing"),
        (_missing_platform_secret, "env KAZOO_WEBHOOK_SECRET: a shipped platform's"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_a_wrong_app_json_is_refused(break_it, expected: str) -> None:  # type: ignore[no-untyped-def]
    data = copy.deepcopy(app_json())
    break_it(data)
    problems = app_json_problems(data)
    assert any(expected in p for p in problems), problems


def test_heroku_secret_generator_is_long_enough() -> None:
    # Heroku's `"generator": "secret"` gives 64 hex characters; a shorter key is refused.
    assert app_json()["env"]["SECRET_KEY"] == {
        "description": app_json()["env"]["SECRET_KEY"]["description"],
        "generator": "secret",
    }
    assert MIN_SECRET_KEY_BYTES <= len(secrets.token_hex(32)) == 64


def test_a_deploy_without_hubspot_token_runs_in_dry_run() -> None:
    entry = app_json()["env"]["HUBSPOT_ACCESS_TOKEN"]
    assert entry["required"] is False and "value" not in entry
    settings = settings_from({**HEROKU_ADDON_ENV, "SECRET_KEY": secrets.token_hex(32)})
    assert settings.dry_run


def test_the_python_buildpack_finds_a_package_manager_file() -> None:
    # heroku/python refuses a pyproject.toml alone ("Couldn't find any supported Python
    # package manager files"): it wants requirements.txt, Pipfile.lock, poetry.lock or
    # uv.lock. A requirements.txt of `.` installs the project, as the Dockerfile does.
    requirements = ROOT / "requirements.txt"
    assert requirements.is_file()
    assert "." in requirements.read_text().split()


# -- docker-compose.yml ---------------------------------------------------------------
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.mark.parametrize("role", ["release", "web", "worker", "listener"])
def test_compose_services_run_the_procfile_processes(role: str) -> None:
    service = compose()["services"][role]
    assert service["build"] == "." and (ROOT / "Dockerfile").is_file()
    # The image's entrypoint runs a Procfile process by name (see the entrypoint tests).
    assert service["command"] == [role] and role in procfile()
    env = service["environment"]
    assert (
        env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
    )
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    # Required: compose refuses to start (`:?`) without it rather than callhook later.
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", env["SECRET_KEY"])
    assert service["env_file"] == ".env"


def test_compose_runs_release_once_before_web_and_worker() -> None:
    services = compose()["services"]
    assert services["release"]["restart"] == "no"
    assert services["release"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for role in ("web", "worker", "listener"):
        assert services[role]["depends_on"] == {
            "release": {"condition": "service_completed_successfully"}
        }
    assert services["listener"]["profiles"] == ["listener"]  # off unless asked for
    assert any(p.endswith(":5000") for p in services["web"]["ports"])


def test_compose_databases_and_their_volumes() -> None:
    data = compose()
    postgres, redis = data["services"]["postgres"], data["services"]["redis"]
    assert postgres["image"] == "postgres:16" and redis["image"] == "redis:7"
    assert "postgres-data:/var/lib/postgresql/data" in postgres["volumes"]
    assert "postgres-data" in data["volumes"]
    assert "healthcheck" in postgres and "healthcheck" in redis
    password = postgres["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${POSTGRES_PASSWORD:?")
    assert "${POSTGRES_PASSWORD:?" in data["services"]["web"]["environment"]["DATABASE_URL"]


# -- Dockerfile -------------------------------------------------------------------------
def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), " ".join(args.split())))
    return stages


def test_dockerfile_final_image_is_slim_unprivileged_and_ports_port() -> None:
    final = dockerfile_stages()[-1]
    instructions = [i for i, _ in final]
    assert final[0][1].startswith("python:3.11-slim")
    users = [args for i, args in final if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    last_user = max(n for n, (i, _) in enumerate(final) if i == "USER")
    assert last_user < instructions.index("ENTRYPOINT") and last_user < instructions.index("CMD")
    env = " ".join(args for i, args in final if i == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    port = re.search(r"\bPORT=(\d+)", env)
    assert port and port.group(1) == "5000"
    exposed = [args for i, args in final if i == "EXPOSE"]
    assert exposed in (["$PORT"], ["${PORT}"], [port.group(1)])
    # No compilers in the final image: only the build stage may install them.
    assert not any(
        re.search(r"apt-get|apk |gcc|build-essential", a) for i, a in final if i == "RUN"
    )


def test_dockerfile_installs_the_package_not_an_editable_checkout() -> None:
    installs = [
        a for stage in dockerfile_stages() for i, a in stage if i == "RUN" and "pip install" in a
    ]
    assert installs and all(a.split()[-1] == "." for a in installs)
    assert not any(re.search(r"(^|\s)(-e|--editable)(\s|$)", a) for a in installs)


def test_dockerfile_runs_the_procfile_through_the_entrypoint() -> None:
    final = dockerfile_stages()[-1]
    entrypoint = json.loads(next(a for i, a in final if i == "ENTRYPOINT"))
    cmd = json.loads(next(a for i, a in final if i == "CMD"))
    assert entrypoint == ["/bin/sh", "/app/deploy/docker-entrypoint.sh"]
    assert cmd == ["web"] and "web" in procfile()
    copies = " ".join(a for i, a in final if i == "COPY")
    for needed in ("Procfile", "mappings", "deploy/docker-entrypoint.sh"):
        assert needed in copies
    assert ("WORKDIR", "/app") in final  # the entrypoint finds /app/Procfile beside it


def test_dockerfile_healthcheck_asks_healthz() -> None:
    final = dockerfile_stages()[-1]
    check = next(a for i, a in final if i == "HEALTHCHECK")
    assert "/app/deploy/docker-healthcheck.py" in check
    assert "/healthz" in (ROOT / "deploy" / "docker-healthcheck.py").read_text()


def test_dockerignore_keeps_secrets_out_and_what_the_build_copies_in() -> None:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    for secret in (".env", ".venv", ".git", "instance"):
        assert secret in patterns
    sources = []
    for stage in dockerfile_stages():
        for instruction, args in stage:
            if instruction == "COPY" and "--from=" not in args:
                sources.extend(a for a in args.split()[:-1] if not a.startswith("--"))
    assert sources
    for source in sources:
        parts = Path(source).parts
        for prefix in (Path(*parts[: n + 1]).as_posix() for n in range(len(parts))):
            ignored = [p for p in patterns if fnmatch.fnmatch(prefix, p.lstrip("/"))]
            assert not ignored, f"{source} is copied but .dockerignore drops it ({ignored})"


# -- the entrypoint, run with stand-ins for gunicorn, celery and callhook ------------------
@pytest.fixture
def stub_path(tmp_path: Path) -> str:
    for name in ("gunicorn", "celery", "callhook"):
        stub = tmp_path / name
        stub.write_text('#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@"\n')
        stub.chmod(0o755)
    return f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"


def run(args: list[str], path: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "WORKER_CONCURRENCY"}
    return subprocess.run(
        args, env={**environ, "PATH": path, **env}, capture_output=True, text=True, timeout=30
    )


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize("role", sorted(procfile()))
def test_entrypoint_runs_the_procfile_command(role: str, stub_path: str) -> None:
    by_entrypoint = run(["sh", str(ENTRYPOINT), role], stub_path)
    by_procfile = run(["sh", "-c", f"exec {procfile()[role]}"], stub_path)
    assert by_entrypoint.returncode == 0, by_entrypoint.stderr
    assert by_entrypoint.stdout == by_procfile.stdout
    argv = by_entrypoint.stdout.splitlines()
    assert argv == shlex.split(procfile()[role].replace("${WORKER_CONCURRENCY:-2}", "2"))


def test_entrypoint_expands_the_procfile_variables(stub_path: str) -> None:
    out = run(["sh", str(ENTRYPOINT), "worker"], stub_path, WORKER_CONCURRENCY="7").stdout
    assert "--concurrency=7" in out.splitlines()
    web = run(["sh", str(ENTRYPOINT), "web"], stub_path).stdout.splitlines()
    assert web[-1] == "webhook_receiver.web:create_app()"  # one argument, quotes removed


def test_entrypoint_runs_any_other_command_as_given(stub_path: str) -> None:
    out = run(["sh", str(ENTRYPOINT), "callhook", "admin", "link", "ops@example.com"], stub_path)
    assert out.stdout.splitlines() == ["callhook", "admin", "link", "ops@example.com"]
    # A single word that is no process of the Procfile is a command too.
    assert run(["sh", str(ENTRYPOINT), "callhook"], stub_path).stdout.splitlines() == ["callhook"]
    assert run(["sh", str(ENTRYPOINT)], stub_path).returncode == 64


# -- the healthcheck script ---------------------------------------------------------------
def healthcheck_module(pid1: bytes) -> Any:
    spec = importlib.util.spec_from_file_location(
        "docker_healthcheck", ROOT / "deploy" / "docker-healthcheck.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    real_open = open

    def fake_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if path == "/proc/1/cmdline":
            import io

            return io.BytesIO(pid1)
        return real_open(path, *args, **kwargs)

    module.open = fake_open
    return module


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_healthcheck_asks_the_web_process(status: int | None, healthy: bool) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    if status is None:
        server.server_close()  # nothing listens
    else:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        module = healthcheck_module(b"/opt/venv/bin/python\0/opt/venv/bin/gunicorn\0-c\0")
        with mock.patch.dict(os.environ, {"PORT": str(port)}):
            assert (module.main() == 0) is healthy
    finally:
        if status is not None:
            server.shutdown()
            server.server_close()


def test_healthcheck_passes_containers_that_serve_no_http() -> None:
    module = healthcheck_module(b"/opt/venv/bin/python\0/opt/venv/bin/celery\0-A\0")
    with mock.patch.dict(os.environ, {"PORT": "1"}):
        assert module.main() == 0


# -- systemd units ------------------------------------------------------------------------
def unit(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (ROOT / "deploy" / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("callhook-web.service", "web"),
        ("callhook-worker.service", "worker"),
        ("callhook-release.service", "release"),
    ],
)
def test_systemd_units_run_the_procfile_commands(name: str, role: str) -> None:
    values = unit(name)
    expected = procfile()[role].replace("${WORKER_CONCURRENCY:-2}", "${WORKER_CONCURRENCY}")
    (exec_start,) = values["ExecStart"]
    program, _, rest = exec_start.partition(" ")
    assert program == f"/opt/callhook/venv/bin/{expected.split()[0]}"
    assert shlex.split(rest) == shlex.split(expected)[1:]
    assert values["User"] == ["callhook"]
    assert values["EnvironmentFile"] == ["/etc/callhook/env"]
    if role == "release":
        assert values["Type"] == ["oneshot"]
    else:
        assert values["Requires"] == ["callhook-release.service"]
        assert values["After"] == ["callhook-release.service"]
    if role == "worker":
        assert "WORKER_CONCURRENCY=2" in values["Environment"]  # the Procfile's default


def test_the_installed_package_carries_every_template_static_file_and_migration(
    tmp_path: Path,
) -> None:
    """The image installs the project as a wheel (`pip install .`), not from the checkout:
    a page template or stylesheet left out of the package data would be a 500 in
    production only."""
    import subprocess
    import sys
    import zipfile

    # From a copy of what git tracks: a build/ folder left by an earlier build would lend
    # its files to the wheel and hide a missing pattern.
    source = tmp_path / "source"
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        str(path.relative_to(ROOT))
        for folder in (
            "webhook_receiver/web/templates",
            "webhook_receiver/web/static",
            "worker/core/migrations",
        )
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert wanted - packaged == set()
