"""Shared fixtures: one wgpu device for the session and a memoized zoo of tiny checkpoints, compiled
packages, loaded runtimes and transformers reference logits (lavapipe compiles every new shader the
first time it sees it, so building each package and runtime once keeps the suite fast)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import MEASURED, Spec, dequantized_copy, make_checkpoint  # noqa: E402

from webllm.compiler.compile import CompileOptions, compile_model  # noqa: E402

torch.set_num_threads(2)


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

    def runtime(self, spec: Spec, mode: str, profile: str, **options):
        from webllm.runtime import Model

        key = (spec.name, mode, profile, tuple(sorted(options.items())))
        if key not in self._rt:
            self._rt[key] = Model.load(self.package(spec, mode, **options), profile=profile, progress=False,
                                       adapter=self.adapter, device=self.device)
        rt = self._rt[key]
        rt.reset()
        return rt

    def logits(self, spec: Spec, mode: str, ids) -> np.ndarray:
        """transformers' logits at every position of `ids`, float64 [T, vocab]."""
        ids = [int(i) for i in ids]
        key = (spec.name, mode, tuple(ids))
        if key not in self._logits:
            with torch.no_grad():
                out = self.hf(spec, mode)(torch.tensor([ids])).logits[0]
            self._logits[key] = out.double().numpy()
        return self._logits[key]


@pytest.fixture(scope="session")
def gpu():
    """(adapter, device): one WebGPU device shared by every runtime of the session."""
    from webllm.runtime.device import request_device

    return request_device()


@pytest.fixture(scope="session")
def zoo(tmp_path_factory, gpu) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("zoo"), gpu)
