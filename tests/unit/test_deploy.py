"""The container and deploy examples say what the service needs: checked, not just shipped."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PORT = 8000


def settings_names() -> set[str]:
    return {f"RESERVE_{name.upper()}" for name in Settings.model_fields}


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_runs_the_tested_entry_point_as_non_root() -> None:
    instructions = dockerfile()
    runtime = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    ops = dict(runtime)
    assert sum(op == "FROM" for op, _ in instructions) == 2, "multi-stage"
    assert runtime[0][1].startswith("python:3.11-slim")
    assert "ENTRYPOINT" not in ops
    assert json.loads(ops["CMD"]) == ["python", "-m", "service", "serve"]  # run by tests/e2e/test_entrypoint.py
    user = ops["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert ops["EXPOSE"] == str(PORT) and ops["STOPSIGNAL"] == "SIGTERM"
    assert "/healthz" in ops["HEALTHCHECK"] and f":{PORT}/" in ops["HEALTHCHECK"]
    config = tomllib.loads((ROOT / "hypercorn.toml").read_text())
    assert config["bind"] == [f"0.0.0.0:{PORT}"] and config["workers"] == 0
    assert config["logconfig_dict"]["loggers"]["hypercorn.access"]["filters"] == ["access"]
    for word in re.findall(r"RESERVE_[A-Z_]+", (ROOT / "Dockerfile").read_text()):
        assert word in settings_names(), word
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


@pytest.mark.skipif(shutil.which("hadolint", path=str(Path(sys.executable).parent)) is None, reason="no hadolint")
def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None
    result = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_puts_reserve_next_to_riva_on_a_gpu() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    riva, reserve = compose["services"]["riva"], compose["services"]["reserve"]
    assert riva["image"].startswith("nvcr.io/nvidia/riva/riva-speech:")
    assert re.search(r":(\$\{RIVA_VERSION:-)?2\.\d+", riva["image"])
    devices = riva["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "--riva-uri=0.0.0.0:50051" in riva["command"]
    assert reserve["environment"]["RESERVE_RIVA_URI"] == "riva:50051"
    redis = compose["services"]["redis"]
    assert reserve["environment"]["RESERVE_REDIS_URL"] == "redis://redis:6379/0"
    assert reserve["depends_on"]["redis"]["condition"] == "service_healthy" and "healthcheck" in redis
    assert re.fullmatch(r"\$\{RESERVE_WORKERS:-[2-9]\}", reserve["environment"]["RESERVE_WORKERS"])
    assert_redis_keeps_history(redis["command"])
    (volume,) = redis["volumes"]
    assert volume.endswith(":/data") and volume.split(":")[0] in compose["volumes"], "persistent"
    assert set(reserve["environment"]) <= settings_names()
    assert reserve["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert reserve["depends_on"]["riva"]["condition"] == "service_healthy"
    assert reserve["ports"] == [f"{PORT}:{PORT}"]
    assert int(reserve["stop_grace_period"].rstrip("s")) >= 50


def assert_redis_keeps_history(argv: list[str]) -> None:
    """Append-only persistence (a restart keeps the sessions' events) and noeviction (a full Redis
    refuses writes rather than drop history readers resume from), with a memory bound."""
    options = dict(zip(argv[argv[0] == "redis-server" :: 2], argv[1 + (argv[0] == "redis-server") :: 2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert re.fullmatch(r"[0-9]+[mg]b", options["--maxmemory"])


def kubernetes_documents() -> dict[str, dict[str, Any]]:
    """Each manifest by kind, and by kind/name where a kind comes twice (two Services)."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs.setdefault(doc["kind"], doc)
            docs[f"{doc['kind']}/{doc.get('metadata', {}).get('name', '')}"] = doc
    return docs


def test_kubernetes_deployment_probes_and_service_fit_together() -> None:
    docs = kubernetes_documents()
    deployment, service = docs["Deployment"], docs["Service/reserve"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": PORT}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"].get("sessionAffinity", "None") == "None", "any pod serves any session: no affinity"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 50
    assert {e["name"] for e in container["env"]} <= settings_names()
    env = {e["name"]: e.get("value") for e in container["env"]}
    workers = int(env["RESERVE_WORKERS"])
    assert workers > 1 and float(container["resources"]["requests"]["cpu"]) >= workers, "a core per worker"
    redis_service = docs["Service/reserve-redis"]
    port = redis_service["spec"]["ports"][0]
    assert env["RESERVE_REDIS_URL"] == f"redis://{redis_service['metadata']['name']}:{port['port']}/0"
    kustomization = docs["Kustomization"]
    assert sorted(kustomization["resources"]) == ["deployment.yaml", "redis.yaml", "service.yaml"]
    readme = " ".join((DEPLOY / "kubernetes" / "README.md").read_text().lower().split())
    assert "any pod serves any request of any session" in readme and "taken over" in readme
    assert "sessionaffinity: clientip" not in readme


def test_kubernetes_redis_is_persistent_bounded_and_reachable() -> None:
    docs = kubernetes_documents()
    service, redis = docs["Service/reserve-redis"], docs["StatefulSet/reserve-redis"]
    pod = redis["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert redis["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert (
        not service["spec"]["selector"].items() <= docs["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    )
    (container,) = pod["spec"]["containers"]
    assert_redis_keeps_history(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] == "redis" and ports == {"redis": 6379}
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = kubernetes_documents()
    for name in ("Deployment", "Service/reserve", "Service/reserve-redis", "StatefulSet/reserve-redis"):
        kubernetes_validate.validate(docs[name], "1.30", strict=True)
