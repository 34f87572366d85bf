"""The HTTP service kit shared by the env server and the inference server."""
