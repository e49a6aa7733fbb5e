"""webllm: compile LLM checkpoints into WebGPU model packages and run them natively or in the browser."""

__version__ = "0.1.0"
