"""Kubernetes manifests (``agentgpt hosts k8s``), validated offline against the API schemas."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agentgpt.cli import app
from agentgpt.cloud.kubernetes import K8sOptions, dns_target, render_manifests, to_yaml

KUBERNETES_VERSION = "1.37.0"
IMAGE = "registry.example.com/agentgpt-env-server:1"


def _validate(doc: dict) -> None:
    validate = pytest.importorskip("kubernetes_validate")
    validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_manifests_are_valid_and_wired_together() -> None:
    options = K8sOptions(
        IMAGE,
        "CartPole-v1",
        replicas=3,
        namespace="agents",
        register={"My-v0": "my_env:make"},
    )
    docs = render_manifests(options, api_key="k8s-test-key-0123456789")
    for doc in docs:
        _validate(doc)
    secret, service, deployment = docs
    assert [d["kind"] for d in docs] == ["Secret", "Service", "Deployment"]
    assert service["spec"]["clusterIP"] == "None"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == labels == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["replicas"] == 3
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    [env] = container["env"]
    assert env["name"] == "AGENTGPT_API_KEYS"
    assert env["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "api-key",
    }
    assert "k8s-test-key-0123456789" not in yaml.safe_dump(deployment)
    assert container["args"][-2:] == ["--register", "My-v0=my_env:make"]
    assert dns_target(options) == "agentgpt-envhost.agents.svc.cluster.local:8000"


def test_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="DNS label"):
        K8sOptions(IMAGE, "CartPole-v1", namespace="Agents_1")
    with pytest.raises(ValueError, match="replicas"):
        K8sOptions(IMAGE, "CartPole-v1", replicas=0)


def test_the_cli_prints_yaml_or_writes_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AGENTGPT_API_KEY", raising=False)
    runner = CliRunner()
    printed = runner.invoke(
        app, ["hosts", "k8s", "--image", IMAGE, "--replicas", "2", "--env", "CartPole-v1"]
    )
    assert printed.exit_code == 0, printed.output
    docs = [d for d in yaml.safe_load_all(printed.stdout) if d]
    assert [d["kind"] for d in docs] == ["Secret", "Service", "Deployment"]
    for doc in docs:
        _validate(doc)
    assert "--env-hosts-dns agentgpt-envhost.default.svc.cluster.local:8000" in printed.output

    out = tmp_path / "manifests"
    written = runner.invoke(
        app,
        ["hosts", "k8s", "--image", IMAGE, "--env", "CartPole-v1", "--out", str(out)],
    )
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in out.iterdir()) == [
        "deployment.yaml",
        "secret.yaml",
        "service.yaml",
    ]
    assert stat.S_IMODE((out / "secret.yaml").stat().st_mode) == 0o600
    key = yaml.safe_load((out / "secret.yaml").read_text())["stringData"]["api-key"]
    assert key not in written.output

    without = runner.invoke(
        app, ["hosts", "k8s", "--image", IMAGE, "--env", "CartPole-v1", "--no-secret"]
    )
    assert [d["kind"] for d in yaml.safe_load_all(without.stdout) if d] == [
        "Service",
        "Deployment",
    ]


def test_the_deploy_folder_holds_what_the_commands_write() -> None:
    """deploy/ keeps the rendered manifests for reading; they must not drift."""
    root = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
    options = K8sOptions("REGISTRY/agentgpt-env-server:TAG", "CartPole-v1", replicas=2)
    expected = to_yaml(render_manifests(options, secret=False))
    assert (root / "envhost.yaml").read_text() == expected
