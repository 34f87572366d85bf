"""The image's SageMaker entry points as real processes, under a temporary ``/opt/ml``.

``agentgpt sagemaker train`` runs from a ``hyperparameters.json`` written the way
SageMaker writes it (every value a string) against a real env server on loopback whose
key lives in Secrets Manager (moto in server mode, reached through ``AWS_ENDPOINT_URL``).
``agentgpt sagemaker serve`` then serves its ``/opt/ml/model``: ``/ping``,
``/invocations`` and the stateful-session headers. The endpoint round trip goes through
boto3's ``sagemaker-runtime`` client pointed at a loopback shim that forwards
``POST /endpoints/<name>/invocations`` to the serving process, as SageMaker does (moto's
``invoke_endpoint`` only returns canned bodies, so it cannot stand in for the container).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
boto3 = pytest.importorskip("boto3")

from sagemaker_jobs import TINY, write_job  # noqa: E402

from agentgpt.api import GPTAPI, EndpointGPTAPI  # noqa: E402
from agentgpt.cloud.sagemaker.errors import TrainingJobFailed  # noqa: E402
from agentgpt.cloud.sagemaker.hyperparameters import METRIC_DEFINITIONS  # noqa: E402
from agentgpt.cloud.sagemaker.jobs import TrainingJob  # noqa: E402
from agentgpt.envhost import EnvServer  # noqa: E402
from agentgpt.envhost.testing import run_server_in_thread  # noqa: E402
from agentgpt.remote.errors import BadRequestError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
#: The commands the tests run; the Dockerfile's entry point must be exactly this prefix.
ENTRYPOINT = ["agentgpt", "sagemaker"]
API_KEY = "env-key-4c1f9b7e2d"
SECRET_ID = "agentgpt/test/env-api-key"


def _command(*args: str) -> list[str]:
    # ``agentgpt`` as the image runs it, from this interpreter.
    assert ENTRYPOINT[0] == "agentgpt"
    return [sys.executable, "-m", "agentgpt", *ENTRYPOINT[1:], *args]


def _aws_env(moto_server: str, root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AGENTGPT_"))}
    env.update(
        AGENTGPT_OPT_ML=str(root),
        AWS_ENDPOINT_URL=moto_server,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
    )
    return env


def _run_train(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command("train"), env=env, capture_output=True, text=True, timeout=600, cwd=REPO
    )


@pytest.fixture(scope="module")
def env_server() -> Iterator[str]:
    with run_server_in_thread(EnvServer(api_keys=[API_KEY])) as url:
        yield url


@pytest.fixture(scope="module")
def secret(moto_server: str) -> str:
    client = boto3.client(
        "secretsmanager",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with contextlib.suppress(client.exceptions.ResourceExistsException):
        client.create_secret(Name=SECRET_ID, SecretString=API_KEY)
    return SECRET_ID


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, moto_server: str, env_server: str, secret: str
) -> dict[str, Any]:
    """One real training job: the process, its /opt/ml root and its environment."""
    root = tmp_path_factory.mktemp("opt_ml")
    hyperparameters = {**TINY, "env_urls": env_server, "env_api_key_secret": secret}
    write_job(root, hyperparameters)
    env = _aws_env(moto_server, root)
    result = _run_train(env)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "result": result, "env": env}


def test_train_writes_the_model_checkpoints_and_metric_lines(trained: dict[str, Any]) -> None:
    root, result = trained["root"], trained["result"]
    model = root / "model"
    assert (model / "checkpoint.pt").is_file()
    assert (model / "hyperparameters.yaml").is_file()
    assert (root / "checkpoints" / "agentgpt" / "checkpoint.pt").is_file()
    assert not (root / "output" / "failure").exists()
    assert "Training on 1 env server(s)" in result.stdout
    # Every update prints one line that the job's metric definitions read.
    lines = [line for line in result.stdout.splitlines() if line.startswith("agentgpt-metrics")]
    assert len(lines) == 512 // (4 * 16)
    found: dict[str, list[float]] = {}
    for line in lines:
        for definition in METRIC_DEFINITIONS:
            match = re.search(definition["Regex"], line)
            if match:
                found.setdefault(definition["Name"], []).append(float(match.group(1)))
    assert found["train:global_step"] == [64.0 * (i + 1) for i in range(len(lines))]
    assert len(found["train:policy_loss"]) == len(lines)
    assert "train:mean_return" in found
    # The trained hyperparameters are the ones of the JSON file.
    import yaml

    saved = yaml.safe_load((model / "hyperparameters.yaml").read_text())
    assert saved["d_model"] == 32 and saved["total_steps"] == 512 and saved["seed"] == 3


def test_the_api_key_appears_nowhere(trained: dict[str, Any]) -> None:
    root, result, env = trained["root"], trained["result"], trained["env"]
    assert API_KEY not in result.stdout + result.stderr
    assert API_KEY not in json.dumps(env)
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml", ".csv", ""):
            assert API_KEY not in path.read_text(errors="replace"), path


def test_train_resumes_from_checkpoints(trained: dict[str, Any], tmp_path: Path) -> None:
    """A restarted job (spot interruption) finds its checkpoint and continues from it."""
    import shutil

    root = tmp_path / "opt_ml"
    shutil.copytree(trained["root"], root)
    shutil.rmtree(root / "model")
    hyperparameters = json.loads((root / "input/config/hyperparameters.json").read_text())
    hyperparameters["total_steps"] = "640"  # two more updates of 64 steps
    write_job(root, hyperparameters)
    env = {**trained["env"], "AGENTGPT_OPT_ML": str(root)}
    result = _run_train(env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from the checkpoint" in result.stdout
    steps = [
        int(m.group(1)) for m in re.finditer(r"agentgpt-metrics .*global_step=(\d+)", result.stdout)
    ]
    assert steps == [576, 640]
    assert (root / "model" / "checkpoint.pt").is_file()


def test_train_without_env_urls_uses_envs_inside_the_container(
    tmp_path: Path, moto_server: str
) -> None:
    write_job(tmp_path, {**TINY, "total_steps": "128"})
    result = _run_train(_aws_env(moto_server, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training on envs inside the container" in result.stdout
    assert (tmp_path / "model" / "checkpoint.pt").is_file()


def test_unknown_hyperparameter_fails_with_its_name(tmp_path: Path, moto_server: str) -> None:
    write_job(tmp_path, {**TINY, "totl_steps": "100"})
    result = _run_train(_aws_env(moto_server, tmp_path))
    assert result.returncode != 0
    failure = (tmp_path / "output" / "failure").read_text()
    assert "totl_steps" in failure


def test_bad_env_url_fails_the_job_and_wait_raises_its_reason(
    tmp_path: Path, moto_server: str
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    write_job(tmp_path, {**TINY, "env_urls": dead, "fleet_timeout": "1"})
    result = _run_train(_aws_env(moto_server, tmp_path))
    assert result.returncode != 0
    reason = (tmp_path / "output" / "failure").read_text()
    assert dead in reason

    # SageMaker reports the failure file as FailureReason. moto completes every job at
    # once, so the Failed description is stubbed (botocore's Stubber) on a moto client.
    from botocore.stub import Stubber

    client = boto3.client(
        "sagemaker",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    job = TrainingJob("agentgpt-failing", client)
    with Stubber(client) as stub:
        stub.add_response(
            "describe_training_job",
            {
                "TrainingJobName": job.name,
                "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/x",
                "TrainingJobStatus": "Failed",
                "SecondaryStatus": "Failed",
                "FailureReason": reason,
                "AlgorithmSpecification": {"TrainingInputMode": "File"},
                "ModelArtifacts": {"S3ModelArtifacts": ""},
                "ResourceConfig": {
                    "InstanceType": "ml.c5.xlarge",
                    "InstanceCount": 1,
                    "VolumeSizeInGB": 30,
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
                "CreationTime": 0,
            },
            {"TrainingJobName": job.name},
        )
        with pytest.raises(TrainingJobFailed, match=re.escape(dead)) as raised:
            job.wait(progress=False, poll_seconds=0)
    assert raised.value.reason == reason


def test_fewer_env_servers_than_instances_fail_clearly(tmp_path: Path, moto_server: str) -> None:
    write_job(
        tmp_path,
        {**TINY, "env_urls": "http://127.0.0.1:9"},
        hosts=["algo-1", "algo-2", "algo-3"],
        current="algo-2",
    )
    result = _run_train(_aws_env(moto_server, tmp_path))
    assert result.returncode != 0
    failure = (tmp_path / "output" / "failure").read_text()
    assert "1 env server(s) for 3 training instances" in failure


# ---------------------------------------------------------------------------- serve
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _request(url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def served(trained: dict[str, Any]) -> Iterator[str]:
    """``agentgpt sagemaker serve`` on the trained job's /opt/ml/model."""
    port = _free_port()
    env = {**trained["env"], "SAGEMAKER_BIND_TO_PORT": str(port)}
    process = subprocess.Popen(
        _command("serve", "--log-level", "warning"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited: {process.stdout.read()}")
            try:
                if _request(f"{url}/ping")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not answer /ping")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_answers_ping_and_invocations(served: str) -> None:
    status, _, body = _request(f"{served}/ping")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    observation = {
        "method": "select_action",
        "agent_ids": ["a", "b"],
        "observations": [[0.0, 0.1, 0.0, 0.2], [0.1, 0.0, -0.1, 0.0]],
    }
    status, _, body = _request(
        f"{served}/invocations",
        json.dumps(observation).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200
    actions = json.loads(body)["actions"]
    assert len(actions) == 2 and all(a in (0, 1) for a in actions)
    status, _, body = _request(
        f"{served}/invocations",
        json.dumps({"method": "info"}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200 and json.loads(body)["env_id"] == "CartPole-v1"


def test_serve_answers_stateful_session_headers(served: str) -> None:
    body = json.dumps({"method": "get_num_input_states"}).encode()
    status, headers, _ = _request(
        f"{served}/invocations",
        body,
        {"Content-Type": "application/json", "X-Amzn-SageMaker-Session-Id": "NEW_SESSION"},
    )
    assert status == 200
    new = {k.lower(): v for k, v in headers.items()}["x-amzn-sagemaker-new-session-id"]
    session_id, _, expires = new.partition("; Expires=")
    assert re.fullmatch(r"[0-9a-f]{32}", session_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expires)
    status, headers, _ = _request(
        f"{served}/invocations",
        body,
        {"Content-Type": "application/json", "X-Amzn-SageMaker-Session-Id": session_id},
    )
    assert status == 200
    assert "x-amzn-sagemaker-new-session-id" not in {k.lower() for k in headers}
    status, headers, _ = _request(
        f"{served}/invocations",
        json.dumps({"requestType": "CLOSE"}).encode(),
        {"Content-Type": "application/json", "X-Amzn-SageMaker-Session-Id": session_id},
    )
    assert status == 200
    assert {k.lower(): v for k, v in headers.items()}[
        "x-amzn-sagemaker-closed-session-id"
    ] == session_id


# ------------------------------------------------------------------ endpoint round trip
class _Shim(http.server.BaseHTTPRequestHandler):
    """SageMaker's runtime on loopback: ``POST /endpoints/<name>/invocations`` goes to the
    container's ``/invocations`` with the headers InvokeEndpoint passes on; a container
    error comes back as SageMaker's ``ModelError``."""

    container = ""
    endpoint = ""
    seen: list[dict[str, Any]] = []
    _PASSED = (
        "Content-Type",
        "Accept",
        "X-Amzn-SageMaker-Session-Id",
        "X-Amzn-SageMaker-Custom-Attributes",
    )

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path != f"/endpoints/{self.endpoint}/invocations":
            self._send(
                400,
                {"message": f"Endpoint {self.path} of account not found."},
                {"x-amzn-ErrorType": "ValidationError"},
            )
            return
        headers = {h: self.headers[h] for h in self._PASSED if self.headers.get(h)}
        status, answer_headers, answer = _request(f"{self.container}/invocations", body, headers)
        lowered = {k.lower(): v for k, v in answer_headers.items()}
        if status != 200:
            self._send(
                424,
                {
                    "Message": "Received client error from model",
                    "OriginalStatusCode": status,
                    "OriginalMessage": answer.decode("utf-8", "replace"),
                },
                {"x-amzn-ErrorType": "ModelError"},
            )
            return
        extra = {"Content-Type": lowered.get("content-type", "application/json")}
        for name in ("x-amzn-sagemaker-new-session-id", "x-amzn-sagemaker-closed-session-id"):
            if name in lowered:
                extra[name] = lowered[name]
        self._send_raw(200, answer, extra)

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        self._send_raw(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers}
        )

    def _send_raw(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def shim(served: str) -> Iterator[str]:
    _Shim.container, _Shim.endpoint, _Shim.seen = served, "agentgpt-test", []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Shim)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _runtime_client(url: str) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_gptapi_on_the_endpoint_acts_like_gptapi_over_http(served: str, shim: str) -> None:
    rng = np.random.default_rng(0)
    episodes = rng.normal(0, 0.05, size=(6, 3, 4)).astype(np.float32)
    ids = ["p1", "p2", "p3"]
    with (
        GPTAPI(served, session="over-http") as http_api,
        EndpointGPTAPI(
            "agentgpt-test", _runtime_client(shim), session="via-endpoint"
        ) as endpoint_api,
    ):
        assert endpoint_api.info()["env_id"] == http_api.info()["env_id"]
        for step, observations in enumerate(episodes):
            terminated = ["p2"] if step == 3 else None
            expected = http_api.select_action(ids, observations, terminated_agent_ids=terminated)
            got = endpoint_api.select_action(ids, observations, terminated_agent_ids=terminated)
            np.testing.assert_array_equal(got, expected)
        endpoint_api.set_num_input_states(2)
        assert endpoint_api.get_num_input_states() == 2
        endpoint_api.set_control_value(0.5, agent_ids=["p1"])
        assert endpoint_api.get_control_value("p1") == 0.5
        assert endpoint_api.sample_action(["p1"]).shape == (1,)
        # A refused call raises the container's error, as over HTTP.
        with pytest.raises(BadRequestError) as refused:
            endpoint_api.set_num_input_states(99)
        assert refused.value.status == 422
        assert refused.value.error_type == "invalid_argument"
        session_id = endpoint_api._transport.session_id
    # One stateful session for all calls: opened by the first, closed at the end.
    sessions = [r["headers"].get("X-Amzn-SageMaker-Session-Id") for r in _Shim.seen]
    assert sessions[0] == "NEW_SESSION"
    assert session_id and set(sessions[1:]) == {session_id}
    assert json.loads(_Shim.seen[-1]["body"]) == {"requestType": "CLOSE"}


def test_an_unknown_endpoint_is_not_found(shim: str) -> None:
    from agentgpt.remote.errors import NotFoundError

    api = EndpointGPTAPI("agentgpt-missing", _runtime_client(shim))
    with api, pytest.raises(NotFoundError, match="agentgpt-missing"):
        api.info()


def test_dockerfile_entrypoint_is_the_command_the_tests_ran() -> None:
    dockerfile = (REPO / "deploy" / "sagemaker" / "Dockerfile").read_text()
    entrypoints = [
        json.loads(line.split(None, 1)[1])
        for line in dockerfile.splitlines()
        if line.startswith("ENTRYPOINT")
    ]
    assert entrypoints == [ENTRYPOINT]
    # SageMaker appends "train" or "serve"; no CMD may add arguments before them.
    assert not any(line.startswith("CMD") for line in dockerfile.splitlines())
