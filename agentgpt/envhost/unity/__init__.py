"""Unity ML-Agents envs on the env server (the ``agentgpt[unity]`` extra).

``launch``: :class:`~agentgpt.envhost.unity.launch.UnityLauncher` starts Unity builds (or
connects to the editor) with a worker id, and so a port, of their own, and sets the engine
configuration and environment parameters through ML-Agents' side channels.
``adapter``: :class:`~agentgpt.envhost.unity.adapter.UnityAdapter` serves an ML-Agents
``BaseEnv`` in the protocol's multi-agent shape. ``spaces``: behaviour specs as Gymnasium
spaces. ``mlagents_envs`` is imported only when a Unity instance starts.
See ``docs/unity.md``.
"""
