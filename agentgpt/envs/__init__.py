"""Environments shipped with AgentGPT, registered under the ``agentgpt/`` namespace.

Importing this package registers the ids, as Gymnasium 1.x plugins do
(``import agentgpt.envs; gymnasium.register_envs(agentgpt.envs)``); ``import agentgpt``
does not. The package also declares :func:`register_envs` as its ``gymnasium.envs`` entry
point, which the trainer, evaluation and the env server load by namespace
(:mod:`agentgpt.core.registration`). Entry points are strings, so registration imports
nothing heavy: an id's module is only imported when that env is made.
"""

from __future__ import annotations

import gymnasium

#: Gymnasium ids shipped with the package, mapped to their entry points.
GYMNASIUM_ENVS: dict[str, dict] = {
    "agentgpt/Remote-v0": {"entry_point": "agentgpt.remote.env:RemoteEnv"},
    "agentgpt/MemoryCue-v0": {"entry_point": "agentgpt.envs.memory_cue:MemoryCueEnv"},
    "agentgpt/MultiDiscreteTarget-v0": {
        "entry_point": "agentgpt.envs.multidiscrete_target:MultiDiscreteTargetEnv"
    },
    "agentgpt/HybridTarget-v0": {"entry_point": "agentgpt.envs.hybrid_target:HybridTargetEnv"},
    "agentgpt/DictObs-v0": {"entry_point": "agentgpt.envs.dict_obs:DictObsEnv"},
}

#: PettingZoo envs shipped with the package: a name an env server can register
#: (``--register NAME=FACTORY``) mapped to its ``module:factory`` returning a ParallelEnv.
PETTINGZOO_ENVS: dict[str, str] = {
    "agentgpt/Landmarks-v0": "agentgpt.envs.landmarks:parallel_env",
}


def register_envs() -> None:
    """Register every shipped id once; safe to call repeatedly."""
    for env_id, spec in GYMNASIUM_ENVS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, **spec)


register_envs()
