"""The Python one-liner: ``AgentGPT.train("CartPole-v1")``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentgpt.serve.client import GPTAPI

__all__ = ["GPTAPI", "AgentGPT", "EndpointGPTAPI"]


class AgentGPT:
    """Entry points for training and loading GPT-policy agents from Python."""

    @staticmethod
    def train(
        env_id: str,
        *,
        resume: bool = False,
        env_hosts: int = 0,
        env_urls: Sequence[str] = (),
        fleet: Any = None,
        callbacks: Sequence[Any] = (),
        **overrides: Any,
    ):
        """Train on ``env_id`` with default hyperparameters, any of which can be overridden
        by keyword (``AgentGPT.train("LunarLander-v3", total_steps=1_000_000)``).

        ``env_hosts=2`` runs the envs on two env servers started on this machine;
        ``env_urls=[...]`` (with ``api_key=``, or ``AGENTGPT_API_KEY``) on servers that
        already run. ``fleet`` takes the full :class:`~agentgpt.hosts.fleet.FleetOptions`
        instead (envs per host, timeouts). ``envs`` passes ready-made vector envs (or a
        :class:`~agentgpt.remote.fleet.Fleet`). ``callbacks`` are training callbacks
        (:class:`~agentgpt.train.callbacks.Callback`): run after every update and every
        periodic evaluation (``eval_every=N``), able to stop the run early.

        Returns the :class:`~agentgpt.train.run.RunResult` (its ``run_dir`` holds the
        checkpoint, metrics and TensorBoard logs).
        """
        from agentgpt.envs import PETTINGZOO_ENVS
        from agentgpt.hosts.fleet import FleetOptions
        from agentgpt.train.hyperparameters import Hyperparameters
        from agentgpt.train.run import claim_run, run_dir_of, saved_total_steps, train

        show_progress = overrides.pop("show_progress", None)
        envs = overrides.pop("envs", None)
        api_key = overrides.pop("api_key", None)
        if fleet is None and (env_hosts or env_urls):
            fleet = FleetOptions(env_urls=list(env_urls), env_hosts=env_hosts, api_key=api_key)
        if envs is not None and fleet is not None:
            raise ValueError("pass either envs or env hosts, not both")
        if resume and "total_steps" not in overrides and overrides.get("run_name"):
            # A resumed run keeps its own budget unless total_steps extends it.
            runs_dir = overrides.get("runs_dir", Hyperparameters.runs_dir)
            total = saved_total_steps(runs_dir, overrides["run_name"])
            if total is not None:
                overrides["total_steps"] = total
        hparams = claim_run(Hyperparameters.from_dict({"env_id": env_id, **overrides}))
        with contextlib.ExitStack() as stack:
            if fleet is not None:
                envs = stack.enter_context(_open_fleet(hparams, fleet, run_dir_of(hparams)))
            return train(
                hparams,
                resume=resume,
                envs=envs,
                show_progress=show_progress,
                callbacks=callbacks,
                team_envs=PETTINGZOO_ENVS,
            )

    @staticmethod
    def load(run_dir: str | Path):
        """Load a trained :class:`~agentgpt.agent.agent.Agent` from a run directory."""
        from agentgpt.agent.checkpoint import load_agent

        return load_agent(run_dir)

    @staticmethod
    def train_on_cloud(
        config: Any,
        hyperparameters: Any = None,
        *,
        env_urls: Sequence[str] = (),
        job_name: str | None = None,
        fleet_timeout: float | None = None,
        **overrides: Any,
    ):
        """Start a SageMaker training job and return its
        :class:`~agentgpt.cloud.sagemaker.jobs.TrainingJob` (``wait()``, ``logs()``,
        ``model_data``, ``stop()``); see docs/cloud.md.

        ``config``: a :class:`~agentgpt.cloud.sagemaker.config.SageMakerConfig` or the path
        of its YAML file. ``hyperparameters``: a ``Hyperparameters`` (or a mapping of its
        fields); keyword ``overrides`` change fields
        (``AgentGPT.train_on_cloud(cfg, env_id="CartPole-v1", total_steps=200_000)``).
        ``env_urls``: env servers the job trains on (their key comes from the config's
        ``env_api_key_secret``); none trains on envs inside the container.
        ``fleet_timeout``: seconds they may all be down before the job fails.
        """
        from agentgpt.cloud.sagemaker.jobs import TrainingJob
        from agentgpt.train.hyperparameters import Hyperparameters

        if hyperparameters is None:
            hyperparameters = Hyperparameters()
        elif not isinstance(hyperparameters, Hyperparameters):
            hyperparameters = Hyperparameters.from_dict(dict(hyperparameters))
        if overrides:
            hyperparameters = hyperparameters.replace(**overrides)
        return TrainingJob.start(
            _sagemaker_config(config),
            hyperparameters,
            env_urls=env_urls,
            job_name=job_name,
            fleet_timeout=fleet_timeout,
        )

    @staticmethod
    def run_on_cloud(
        config: Any,
        endpoint_name: str | None = None,
        *,
        model_data: Any,
        session: str | None = None,
        wait: bool = True,
    ) -> GPTAPI:
        """Deploy a trained agent as a SageMaker real-time endpoint (updating it when it
        exists), wait until it is InService, and return a :class:`GPTAPI` bound to it.

        ``model_data``: a finished :class:`~agentgpt.cloud.sagemaker.jobs.TrainingJob`,
        an ``s3://.../model.tar.gz``, or a local run directory (packed and uploaded under
        the config's ``output_path``). ``endpoint_name`` defaults to ``agentgpt-<env>``.
        """
        from agentgpt.cloud.sagemaker.endpoints import deploy

        cfg = _sagemaker_config(config)
        uri, name = _model_source(cfg, model_data, endpoint_name)
        deploy(cfg, name, uri, wait=wait)
        return EndpointGPTAPI(name, region=cfg.region, session=session)

    @staticmethod
    def delete_endpoint(name: str, *, region: str | None = None) -> list[str]:
        """Delete a SageMaker endpoint, its endpoint config and its models."""
        from agentgpt.cloud.sagemaker.endpoints import delete_endpoint

        return delete_endpoint(name, region=region)


def _open_fleet(hparams: Any, options: Any, run_dir: Path) -> Any:
    """The env servers ``options`` describe, as a fleet of the run's envs."""
    from agentgpt.envs import PETTINGZOO_ENVS
    from agentgpt.hosts.fleet import open_fleet

    return open_fleet(
        hparams.env_id,
        options,
        num_envs=hparams.num_envs,
        seed=hparams.seed,
        env_kwargs=hparams.env_kwargs,
        register=PETTINGZOO_ENVS,
        log_dir=run_dir / "env-hosts",
    )


class EndpointGPTAPI(GPTAPI):
    """:class:`GPTAPI` on a SageMaker endpoint: the same methods, each call sent with
    ``sagemaker-runtime``'s ``invoke_endpoint`` (AWS credentials, no API key). Its calls
    share one stateful session, so they reach the instance holding its agents' contexts;
    ``close()`` ends it. ``client``: a boto3 ``sagemaker-runtime`` client (by default one
    from boto3's standard configuration and ``region``)."""

    def __init__(
        self,
        endpoint_name: str,
        client: Any = None,
        *,
        region: str | None = None,
        session: str | None = None,
        encoding: Any = "msgpack",
    ) -> None:
        from agentgpt.cloud.sagemaker.runtime import EndpointTransport

        self.endpoint_name = endpoint_name
        self.url = f"sagemaker://{endpoint_name}"
        self.session = session
        self._transport = EndpointTransport(endpoint_name, client, region=region, encoding=encoding)


def _sagemaker_config(config: Any) -> Any:
    from agentgpt.cloud.sagemaker.config import SageMakerConfig

    if isinstance(config, SageMakerConfig):
        return config
    return SageMakerConfig.from_yaml(config)


def _model_source(cfg: Any, model_data: Any, endpoint_name: str | None) -> tuple[str, str]:
    """The S3 URI of the model and the endpoint's name (a run directory is uploaded)."""
    from agentgpt.cloud.sagemaker.endpoints import upload_model

    job_name = getattr(model_data, "name", None)
    if hasattr(model_data, "model_data"):
        uri = model_data.model_data
        if uri is None:
            raise ValueError(
                f"training job {job_name} has no model yet (status {model_data.status()})"
            )
        return uri, endpoint_name or _endpoint_name(job_name)
    text = str(model_data)
    if text.startswith("s3://"):
        return text, endpoint_name or "agentgpt"
    run_dir = Path(text)
    name = endpoint_name or _endpoint_name(run_dir.resolve().name)
    return upload_model(cfg, run_dir, name), name


def _endpoint_name(base: str | None) -> str:
    import re

    slug = re.sub(r"[^A-Za-z0-9]+", "-", base or "").strip("-")
    if not slug.startswith("agentgpt"):
        slug = f"agentgpt-{slug}" if slug else "agentgpt"
    return slug[:63].rstrip("-")
