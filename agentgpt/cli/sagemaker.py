"""``agentgpt sagemaker train|serve``: the SageMaker container's entry points.

SageMaker runs a bring-your-own-container image as ``IMAGE train`` for a training job
and ``IMAGE serve`` for an endpoint; the image's entry point is ``agentgpt sagemaker``,
so these two commands are what runs there (``deploy/sagemaker/Dockerfile``). Both read
the ``/opt/ml`` layout (:mod:`agentgpt.cloud.sagemaker.container`), whose root
``AGENTGPT_OPT_ML`` moves, so they run outside a container as well.

``train`` reads the job's hyperparameters (all strings), trains on the env servers it
names (their key fetched from Secrets Manager) or on envs in the container, resumes
from ``/opt/ml/checkpoints`` when a checkpoint is there (a restarted spot job), prints
one metrics line per update, writes the model to ``/opt/ml/model``, and on failure
writes the reason to ``/opt/ml/output/failure`` and exits non-zero. ``serve`` is the
inference server on ``0.0.0.0:8080`` (``SAGEMAKER_BIND_TO_PORT``) with the model from
``/opt/ml/model``, answering SageMaker's stateful-session headers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from agentgpt.cli.extras import require

__all__ = ["register"]

#: The run directory's files the model archive keeps (what ``agentgpt serve`` loads,
#: plus the metrics for the record).
MODEL_FILES = ("checkpoint.pt", "hyperparameters.yaml", "tuned.yaml", "metrics.csv")
#: Run name inside the container when the hyperparameters give none.
DEFAULT_RUN_NAME = "agentgpt"
#: Where the leader of a multi-instance job listens for the others (torch's default).
DEFAULT_MASTER_PORT = 29500

app = typer.Typer(
    name="sagemaker",
    help="The SageMaker container's entry points (train, serve); see docs/cloud.md.",
    no_args_is_help=True,
)


class _Stopped(Exception):
    """SageMaker stopped the job (SIGTERM): a checkpoint was saved."""


@app.command("train")
def train_command() -> None:
    """Run the training job described under /opt/ml (or $AGENTGPT_OPT_ML)."""
    from agentgpt.cloud.sagemaker.container import OptMl

    paths = OptMl.from_env()
    paths.failure_file.unlink(missing_ok=True)  # a restarted job starts without one
    # SageMaker stops a job (and reclaims a spot instance) with SIGTERM: the trainer saves
    # a checkpoint on KeyboardInterrupt, which a restarted job resumes from.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        require("sagemaker train", "torch", "tensorboard")
    except typer.Exit:
        paths.write_failure("the image lacks the train extra (torch, tensorboard)")
        raise
    try:
        _train(paths)
    except _Stopped as stop:
        typer.echo(str(stop), err=True)
        raise typer.Exit(143) from None
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
        paths.write_failure(reason)
        typer.echo(f"Training failed: {reason}", err=True)
        raise typer.Exit(1) from None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _train(paths: Any) -> None:
    from agentgpt.agent.checkpoint import CHECKPOINT_FILE
    from agentgpt.cloud.sagemaker.container import fetch_secret
    from agentgpt.cloud.sagemaker.hyperparameters import from_string_map
    from agentgpt.envs import PETTINGZOO_ENVS
    from agentgpt.hosts.fleet import FleetOptions, open_fleet
    from agentgpt.train.hyperparameters import Hyperparameters
    from agentgpt.train.replicas import replica_seed, share_of
    from agentgpt.train.run import TrainingInterrupted, train

    fields, container = from_string_map(Hyperparameters, paths.hyperparameters())
    env_urls, secret = container["env_urls"], container["env_api_key_secret"]
    resources = paths.resource_config()
    rank, world_size = resources.rank, resources.world_size
    if world_size > 1:
        env_urls = share_of(env_urls, rank, world_size) if env_urls else env_urls
    # The run lives in the checkpoint directory, which SageMaker syncs with S3: a job
    # restarted after a spot interruption finds its checkpoint there and resumes.
    fields["runs_dir"] = str(paths.checkpoint_dir)
    fields["run_name"] = fields.get("run_name") or DEFAULT_RUN_NAME
    hparams = Hyperparameters.from_dict(fields)
    run_dir = paths.checkpoint_dir / hparams.run_name
    resume = (run_dir / CHECKPOINT_FILE).is_file()
    if resume:
        print(f"Resuming from the checkpoint in {run_dir}", flush=True)
    if not resources.is_leader:
        # Only the leader writes under /opt/ml/checkpoints (SageMaker uploads it); the
        # others keep their run in a scratch directory, resumed from the leader's copy.
        scratch = Path(tempfile.mkdtemp(prefix="agentgpt-replica-"))
        if resume:
            shutil.copytree(run_dir, scratch / hparams.run_name)
        hparams = hparams.replace(runs_dir=str(scratch))
    api_key = fetch_secret(secret) if secret else None
    if env_urls and not api_key:
        api_key = os.environ.get("AGENTGPT_API_KEY")
    if secret and not env_urls:
        print("env_api_key_secret is set but no env_urls: training on local envs", flush=True)

    with contextlib.ExitStack() as stack:
        # Join the other instances first: one that fails to reach its env servers then
        # leaves a group the others notice at once, instead of one they wait for.
        replicas = _join_replicas(resources) if world_size > 1 else None
        if replicas is not None:
            stack.callback(replicas.close)
        envs = None
        if env_urls:
            timeout = container["fleet_timeout"]
            options = FleetOptions(
                env_urls=env_urls,
                api_key=api_key,
                **({"fleet_timeout": timeout} if timeout is not None else {}),
            )
            envs = stack.enter_context(
                open_fleet(
                    hparams.env_id,
                    options,
                    num_envs=hparams.num_envs,
                    seed=replica_seed(hparams.seed, rank),
                    env_kwargs=hparams.env_kwargs,
                    register=PETTINGZOO_ENVS,
                )
            )
            print(f"Training on {len(env_urls)} env server(s)", flush=True)
        else:
            print("Training on envs inside the container", flush=True)
        try:
            result = train(
                hparams,
                resume=resume,
                envs=envs,
                show_progress=False,
                callbacks=[_metrics_printer(resources.current_host, resources.is_leader)],
                team_envs=PETTINGZOO_ENVS,
                replicas=replicas,
            )
        except TrainingInterrupted as stop:
            raise _Stopped(
                f"Stopped at step {stop.global_step}; checkpoint saved in {stop.run_dir}"
            ) from None
    if resources.is_leader:
        _write_model(result.run_dir, paths.model_dir)
        print(f"Model written to {paths.model_dir}", flush=True)
    print(f"Trained {result.global_step} steps", flush=True)


def _join_replicas(resources: Any) -> Any:
    """This instance's place in the job's ``torch.distributed`` group.

    The leader (``algo-1``) listens on ``$MASTER_PORT`` (29500) of ``$MASTER_ADDR`` (its
    host name); gloo uses the network interface SageMaker names in
    ``resourceconfig.json`` unless ``$GLOO_SOCKET_IFNAME`` says otherwise.
    """
    from agentgpt.train.replicas import TorchReplicas

    if resources.network_interface_name and not os.environ.get("GLOO_SOCKET_IFNAME"):
        os.environ["GLOO_SOCKET_IFNAME"] = resources.network_interface_name
    address = os.environ.get("MASTER_ADDR") or resources.leader
    port = int(os.environ.get("MASTER_PORT") or DEFAULT_MASTER_PORT)
    print(
        f"Instance {resources.current_host} joins {resources.world_size} instances "
        f"(rank {resources.rank}, leader {resources.leader} at {address}:{port})",
        flush=True,
    )
    return TorchReplicas(resources.rank, resources.world_size, address, port)


def _metrics_printer(host: str, is_leader: bool) -> Any:
    from agentgpt.cloud.sagemaker.hyperparameters import metric_line
    from agentgpt.train.callbacks import Callback

    class MetricsPrinter(Callback):
        """Prints each update's metrics in the form the job's metric definitions match
        (the leader's only: it speaks for the job), and on every instance of a
        multi-instance job the digest of the weights all instances agreed on."""

        def on_update(self, event: Any) -> None:
            if is_leader:
                print(metric_line(event.row), flush=True)
            if event.weights_digest is not None:
                print(
                    f"agentgpt-replica host={host} update={event.update} "
                    f"weights={event.weights_digest}",
                    flush=True,
                )

    return MetricsPrinter()


def _write_model(run_dir: Path, model_dir: Path) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        source = run_dir / name
        if source.is_file():
            shutil.copy2(source, model_dir / name)


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the model in /opt/ml/model (or $AGENTGPT_OPT_ML/model) on port 8080
    ($SAGEMAKER_BIND_TO_PORT): /ping and /invocations, with stateful sessions."""
    require("sagemaker serve", "torch")
    from agentgpt.cli.server_flags import configure_logging
    from agentgpt.cloud.sagemaker.container import BIND_PORT_ENV, DEFAULT_PORT, OptMl
    from agentgpt.cloud.sagemaker.sessions import StatefulSessions
    from agentgpt.serve.server import PolicyServer

    configure_logging(log_level)
    paths = OptMl.from_env()
    port_text = os.environ.get(BIND_PORT_ENV) or str(DEFAULT_PORT)
    try:
        port = int(port_text)
    except ValueError:
        typer.echo(f"{BIND_PORT_ENV} must be a port number, got {port_text!r}", err=True)
        raise typer.Exit(2) from None
    try:
        # SageMaker authenticates callers itself and passes no Authorization header on.
        server = PolicyServer(paths.model_dir)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"Cannot serve {paths.model_dir}: {exc}", err=True)
        raise typer.Exit(2) from None
    server.app = StatefulSessions(server.app)
    server.run(host=host, port=port, log_level=log_level)


def register(parent: typer.Typer) -> None:
    """Add ``agentgpt sagemaker train|serve``."""
    parent.add_typer(app, name="sagemaker")
