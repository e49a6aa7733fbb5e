"""webllm: compile LLM checkpoints into WebGPU model packages and run them natively or in the browser.

    from webllm import Engine
    engine = Engine()  # the embedded default model (SmolLM2-135M-Instruct)
    r = engine.chat.completions.create(messages=[{"role": "user", "content": "Hello!"}])
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Engine":  # lazily: `import webllm` alone does not load wgpu
        from webllm.engine import Engine

        return Engine
    raise AttributeError(f"module 'webllm' has no attribute {name!r}")


__all__ = ["Engine", "__version__"]
