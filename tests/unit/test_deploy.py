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
    assert set(reserve["environment"]) <= settings_names()
    assert reserve["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert reserve["depends_on"]["riva"]["condition"] == "service_healthy"
    assert reserve["ports"] == [f"{PORT}:{PORT}"]
    assert int(reserve["stop_grace_period"].rstrip("s")) >= 50


def kubernetes_documents() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_kubernetes_deployment_probes_and_service_fit_together() -> None:
    docs = kubernetes_documents()
    deployment, service = docs["Deployment"], docs["Service"]
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
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 50
    assert {e["name"] for e in container["env"]} <= settings_names()
    kustomization = docs["Kustomization"]
    assert sorted(kustomization["resources"]) == ["deployment.yaml", "service.yaml"]
    assert "session affinity" in (DEPLOY / "kubernetes" / "README.md").read_text().lower()


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for kind in ("Deployment", "Service"):
        kubernetes_validate.validate(kubernetes_documents()[kind], "1.30", strict=True)
