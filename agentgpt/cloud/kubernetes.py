"""Kubernetes manifests for env servers: a Deployment, a headless Service, the key's Secret.

Every pod runs ``agentgpt env-server`` on one port, with readiness and liveness probes on
``/health`` and resource requests. The Service is headless (``clusterIP: None``): its
name resolves to the address of every ready pod, which is what a trainer in the cluster
gives ``agentgpt train --env-hosts-dns NAME.NAMESPACE.svc.cluster.local:PORT``. The API
key comes from a Secret as ``AGENTGPT_API_KEYS``; the manifests include that Secret
unless it is managed elsewhere (``secret=False``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

__all__ = ["K8sOptions", "dns_target", "render_manifests", "to_yaml"]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: The Secret's key that holds the API key.
SECRET_KEY = "api-key"


def _check_name(value: str, what: str) -> str:
    if not _NAME.match(value) or len(value) > 63:
        raise ValueError(
            f"{what} {value!r} must be a DNS label: lower-case letters, digits and '-',"
            " at most 63 characters, starting and ending with a letter or digit"
        )
    return value


class K8sOptions:
    """What the manifests describe (see :func:`render_manifests`)."""

    def __init__(
        self,
        image: str,
        env_id: str,
        *,
        replicas: int = 1,
        namespace: str = "default",
        name: str = "agentgpt-envhost",
        port: int = 8000,
        register: Mapping[str, str] | None = None,
        cpu: str = "1",
        memory: str = "1Gi",
        memory_limit: str | None = "2Gi",
        max_envs_per_key: int | None = None,
    ) -> None:
        if not image or any(ch.isspace() for ch in image):
            raise ValueError(f"image must be an image reference, got {image!r}")
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        if not 0 < port < 65536:
            raise ValueError(f"port must be between 1 and 65535, got {port}")
        self.image = image
        self.env_id = env_id
        self.replicas = int(replicas)
        self.namespace = _check_name(namespace, "namespace")
        self.name = _check_name(name, "name")
        self.port = int(port)
        self.register = dict(register or {})
        self.cpu = cpu
        self.memory = memory
        self.memory_limit = memory_limit
        self.max_envs_per_key = max_envs_per_key

    @property
    def secret_name(self) -> str:
        return f"{self.name}-api-key"


def dns_target(options: K8sOptions) -> str:
    """``NAME.NAMESPACE.svc.cluster.local:PORT``: what ``--env-hosts-dns`` takes."""
    return f"{options.name}.{options.namespace}.svc.cluster.local:{options.port}"


def render_manifests(
    options: K8sOptions, *, api_key: str | None = None, secret: bool = True
) -> list[dict[str, Any]]:
    """The manifests as dicts: the Secret (when ``secret`` and ``api_key``), the headless
    Service and the Deployment."""
    labels = {
        "app.kubernetes.io/name": "agentgpt-envhost",
        "app.kubernetes.io/instance": options.name,
    }
    meta = {"name": options.name, "namespace": options.namespace, "labels": dict(labels)}
    docs: list[dict[str, Any]] = []
    if secret:
        if not api_key:
            raise ValueError("the Secret needs an API key")
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {**meta, "name": options.secret_name},
                "type": "Opaque",
                "stringData": {SECRET_KEY: api_key},
            }
        )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": dict(meta),
            "spec": {
                "clusterIP": "None",  # headless: the name resolves to every ready pod
                "selector": dict(labels),
                "ports": [{"name": "http", "port": options.port, "targetPort": "http"}],
            },
        }
    )
    args = ["--host", "0.0.0.0", "--port", str(options.port), "--log-level", "warning"]
    for env_name, factory in options.register.items():
        args += ["--register", f"{env_name}={factory}"]
    if options.max_envs_per_key is not None:
        args += ["--max-envs-per-key", str(options.max_envs_per_key)]
    probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 2}
    resources: dict[str, Any] = {"requests": {"cpu": options.cpu, "memory": options.memory}}
    if options.memory_limit:
        resources["limits"] = {"memory": options.memory_limit}
    container = {
        "name": "env-server",
        "image": options.image,
        "command": ["agentgpt", "env-server"],
        "args": args,
        "ports": [{"name": "http", "containerPort": options.port, "protocol": "TCP"}],
        "env": [
            {
                "name": "AGENTGPT_API_KEYS",
                "valueFrom": {"secretKeyRef": {"name": options.secret_name, "key": SECRET_KEY}},
            }
        ],
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {
            **probe,
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": resources,
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "annotations": {"agentgpt/env-id": options.env_id}},
            "spec": {
                "replicas": options.replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "containers": [container],
                        "terminationGracePeriodSeconds": 15,
                    },
                },
            },
        }
    )
    return docs


def to_yaml(docs: Sequence[Mapping[str, Any]]) -> str:
    """The manifests as one multi-document YAML text."""
    return yaml.safe_dump_all([dict(doc) for doc in docs], sort_keys=False)
