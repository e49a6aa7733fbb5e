"""Importers: turn a checkpoint (HF folder or GGUF file) into an ImportedModel."""

from __future__ import annotations

from pathlib import Path

from webllm.errors import InputError
from webllm.importers.base import ImportedModel


def load_model(path: str | Path) -> ImportedModel:
    """Dispatch on the input: a folder with config.json (Hugging Face) or a .gguf file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    if p.is_dir():
        from webllm.importers.hf import load_hf

        return load_hf(p)
    if p.suffix.lower() == ".gguf" or _is_gguf(p):
        from webllm.importers.gguf import load_gguf

        return load_gguf(p)
    raise InputError(f"{p}: not a Hugging Face checkpoint folder (with config.json) nor a GGUF file")


def _is_gguf(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(4) == b"GGUF"


__all__ = ["ImportedModel", "load_model"]
