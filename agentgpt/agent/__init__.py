"""The trained artifact: what a run leaves behind and everything that uses it.

An :class:`~agentgpt.agent.agent.Agent` is a GPT policy with the statistics that feed it;
its checkpoint format, evaluation and ONNX export live here, below the trainer, so that
an inference server or an exported model never imports the trainer. Importing a
submodule imports torch.
"""
