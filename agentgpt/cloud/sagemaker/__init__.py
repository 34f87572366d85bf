"""Training jobs and real-time endpoints on Amazon SageMaker, with plain boto3.

- :mod:`.config`: :class:`SageMakerConfig`, validated before any AWS call, from YAML.
- :mod:`.hyperparameters`: a run's hyperparameters as SageMaker's string map and back,
  and the metric lines the trainer prints for the console's metric definitions.
- :mod:`.container`: the ``/opt/ml`` layout of the bring-your-own-container contract.
- :mod:`.jobs`: :class:`TrainingJob` (create, status, wait, logs, stop, model data).
- :mod:`.endpoints`: model, endpoint config and endpoint (create or update, wait,
  delete), and packing a run directory as ``model.tar.gz``.
- :mod:`.runtime`: the ``sagemaker-runtime`` transport a ``GPTAPI`` calls an endpoint
  through, with stateful-session routing.
- :mod:`.sessions`: the container side of stateful sessions (an ASGI middleware).

- :mod:`.image`: building the image and pushing it to ECR.

The trainer and the inference server run inside the container
(``agentgpt sagemaker train|serve``); this package only reaches them through that image.
"""

from agentgpt.cloud.sagemaker.config import ConfigError, SageMakerConfig

__all__ = ["ConfigError", "SageMakerConfig"]
