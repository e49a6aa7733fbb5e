"""Quantization modes: which storage format each matrix of a model gets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from webllm.errors import UnsupportedModelError
from webllm.quantization.formats import PackedWeight, check_shape, pack_float, quantize_q4s


@dataclass(frozen=True)
class QuantizationMode:
    name: str
    weight_format: str  # "q4s", "f16", "f32"
    scale_dtype: str  # for q4s
    profiles: tuple[str, ...]  # device profiles the package carries, preferred first


MODES = {
    "q4f16_1": QuantizationMode("q4f16_1", "q4s", "f16", ("f16", "f32")),
    "q4f32_1": QuantizationMode("q4f32_1", "q4s", "f32", ("f32",)),
    "q0f16": QuantizationMode("q0f16", "f16", "f16", ("f16", "f32")),
    "q0f32": QuantizationMode("q0f32", "f32", "f32", ("f32",)),
}


def get_mode(name: str) -> QuantizationMode:
    if name not in MODES:
        raise UnsupportedModelError(f"--quantization {name!r} is not supported (choose: {', '.join(MODES)})")
    return MODES[name]


def quantize_matrix(w: np.ndarray, mode: QuantizationMode, name: str) -> PackedWeight:
    """Store a float matrix [N, K] in the mode's format."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise UnsupportedModelError(f"tensor {name}: expected a matrix, got shape {list(w.shape)}")
    check_shape(mode.weight_format, w.shape, name)
    if mode.weight_format == "q4s":
        return quantize_q4s(w, mode.scale_dtype)
    return pack_float(w, mode.weight_format)
