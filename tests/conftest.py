"""Shared fixtures: one wgpu device for the session and a memoized zoo of tiny checkpoints, compiled
packages, loaded runtimes and transformers reference logits (lavapipe compiles every new shader the
first time it sees it, so building each package and runtime once keeps the suite fast)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# transformers' model code imports triton when it is installed (xgrammar depends on it), and triton's
# LLVM loaded after lavapipe's (the first Vulkan adapter) crashes the process: load them all now.
import transformers.models.llama.modeling_llama  # noqa: E402, F401, I001
import transformers.models.mistral.modeling_mistral  # noqa: E402, F401
import transformers.models.qwen2.modeling_qwen2  # noqa: E402, F401

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import (  # noqa: E402
    MEASURED,
    Spec,
    dequantized_copy,
    int8_decode_inputs,
    int8_prefill_inputs,
    make_checkpoint,
    round_kv_cache_f16,
)

round_kv_cache_f16()  # the packages' KV cache is f16 in both profiles

from webllm.compiler.compile import CompileOptions, compile_model  # noqa: E402

torch.set_num_threads(2)


# The longest modules first (seconds on a 2-core host, run alone), so that a parallel run (`pytest -n 2
# --dist loadfile`, the README's command: a module a worker) does not end on one worker still busy with
# them while the other idles; the rest keep their order.
SLOW_FIRST = ["test_web.py", "test_default_model.py", "test_web_node.py", "test_web_node_variants.py",
              "test_perplexity.py", "test_reference.py", "test_tuning.py", "test_gguf.py", "test_web_serve.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: module order kept


def pytest_sessionfinish(session):
    """A pytest-xdist worker hands its measured errors to the controller (pytest_testnodedown)."""
    out = getattr(session.config, "workeroutput", None)
    if out is not None:
        out["measured"] = [[mode, profile, err] for (mode, profile), err in MEASURED.items()]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for mode, profile, err in getattr(node, "workeroutput", {}).get("measured", []):
        MEASURED[(mode, profile)] = max(MEASURED[(mode, profile)], err)


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("max logit error / max|logits| (vs transformers on dequantized weights)")
        for (mode, profile), err in sorted(MEASURED.items()):
            terminalreporter.write_line(f"{mode:8s} profile {profile}: {err:.3e}")


class Zoo:
    """Memoized builders, keyed by spec name, quantization mode and compile options."""

    def __init__(self, root: Path, gpu):
        self.root = root
        self.adapter, self.device = gpu
        self._hf: dict = {}
        self._pkg: dict = {}
        self._rt: dict = {}
        self._logits: dict = {}

    def checkpoint(self, spec: Spec) -> Path:
        folder = self.root / "ckpt" / spec.name
        if (spec.name, "q0f32") not in self._hf:
            self._hf[spec.name, "q0f32"] = make_checkpoint(spec, folder)
        return folder

    def hf(self, spec: Spec, mode: str = "q0f32") -> torch.nn.Module:
        """The transformers model with the weights `mode` stores (dequantized), fp32, eval mode."""
        self.checkpoint(spec)
        if (spec.name, mode) not in self._hf:
            self._hf[spec.name, mode] = dequantized_copy(self._hf[spec.name, "q0f32"], mode)
        return self._hf[spec.name, mode]

    def package(self, spec: Spec, mode: str, **options) -> Path:
        key = (spec.name, mode, tuple(sorted(options.items())))
        if key not in self._pkg:
            out = self.root / "pkg" / f"{spec.name}-{mode}-{len(self._pkg)}"
            compile_model(self.checkpoint(spec), out, CompileOptions(quantization=mode, progress=False, **options))
            self._pkg[key] = out
        return self._pkg[key]

    def kernel_source(self, spec: Spec, mode: str, kernel: str, **options) -> str:
        return (self.package(spec, mode, **options) / "kernels" / f"{kernel}.wgsl").read_text()

    def runtime(self, spec: Spec, mode: str, profile: str, **options):
        from webllm.runtime import Model

        key = (spec.name, mode, profile, tuple(sorted(options.items())))
        if key not in self._rt:
            # prefill in float (the rule): the int8 prefill ("q8"), which a software adapter may time
            # faster on these tiny models, rounds the matmuls' inputs (test_tuning checks it)
            self._rt[key] = Model.load(self.package(spec, mode, **options), profile=profile, progress=False,
                                       adapter=self.adapter, device=self.device, prefill_variant="rule")
        rt = self._rt[key]
        rt.reset()
        return rt

    def logits(self, spec: Spec, mode: str, ids, decoded_from: int | None = None, int8_prefill: str | None = None,
               prompt: int | None = None) -> np.ndarray:
        """transformers' logits at every position of `ids`, float64 [T, vocab]. `decoded_from`: the
        positions from there on were decode steps, whose matmuls read int8 inputs where the package's
        do (tiny_models.int8_decode_inputs). `int8_prefill`: the prefill ("layers") or score ("head")
        phase ran the "q8" prefill variant, whose matmuls read int8 blocks of 32 (int8_prefill_inputs;
        the score phase's head too), over the first `prompt` positions (None: all)."""
        ids = [int(i) for i in ids]
        key = (spec.name, mode, tuple(ids), decoded_from, int8_prefill, prompt)
        if key not in self._logits:
            model = self.hf(spec, mode)
            hooks = int8_decode_inputs(model, mode, decoded_from) if decoded_from is not None else []
            if int8_prefill:
                hooks += int8_prefill_inputs(model, mode, head=int8_prefill == "head", end=prompt)
            try:
                with torch.no_grad():
                    out = model(torch.tensor([ids])).logits[0]
            finally:
                for h in hooks:
                    h.remove()
            self._logits[key] = out.double().numpy()
        return self._logits[key]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory) -> Path:
    """Every test writes its cache (compiled packages, tuning results) to a folder of its own, never
    the user's ~/.cache/webllm: WEBLLM_CACHE is set for the session and the processes it starts."""
    import os

    folder = tmp_path_factory.mktemp("webllm-cache")
    old = os.environ.get("WEBLLM_CACHE")
    os.environ["WEBLLM_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("WEBLLM_CACHE", None)
    else:
        os.environ["WEBLLM_CACHE"] = old


@pytest.fixture(scope="session")
def gpu():
    """(adapter, device): one WebGPU device shared by every runtime of the session."""
    from webllm.runtime.device import request_device

    return request_device()


@pytest.fixture(scope="session")
def zoo(tmp_path_factory, gpu) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("zoo"), gpu)


# A tiny random model speaking SmolLM2's real byte-level BPE vocabulary (49,152 tokens) and ChatML
# template: fast like the other tiny models, yet its text has real token boundaries, multi-byte
# characters and special tokens, and xgrammar can compile JSON grammars against it.
BPE_SPEC = Spec("bpe_chat", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=49152, seed=11)


@pytest.fixture(scope="session")
def bpe_package(zoo) -> Path:
    """A q0f32 package of BPE_SPEC (context 1024, prefill chunk 64)."""
    import json
    import shutil

    from webllm.importers.gguf import load_gguf_tokenizer
    from webllm.models_cache import default_model_path

    key = "bpe_package"
    if key not in zoo._pkg:
        ckpt = zoo.root / "ckpt-bpe"
        shutil.copytree(zoo.checkpoint(BPE_SPEC), ckpt)
        tok_json, tok_cfg = load_gguf_tokenizer(default_model_path())
        (ckpt / "tokenizer.json").write_text(tok_json, encoding="utf-8")
        tok_cfg["eos_token"] = "<|im_end|>"
        (ckpt / "tokenizer_config.json").write_text(json.dumps(tok_cfg), encoding="utf-8")
        out = zoo.root / "pkg" / "bpe_chat"
        compile_model(ckpt, out, CompileOptions(quantization="q0f32", context_window=1024, prefill_chunk=64,
                                                progress=False))
        zoo._pkg[key] = out
    return zoo._pkg[key]
