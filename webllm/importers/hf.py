"""Hugging Face checkpoint folders: config.json, *.safetensors, tokenizer files."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from webllm.config import normalize_hf_config
from webllm.errors import InputError
from webllm.importers.base import ImportedModel

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def _read_json(path: Path, required: bool = True) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise InputError(f"{path}: file is missing")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


class SafetensorsFile:
    """Lazy reader of one .safetensors file: parses the header, memory-maps tensors on demand.

    Parsed by hand (the format is an 8-byte length, a JSON header, raw data) because the
    safetensors package's numpy backend cannot return bf16, the most common checkpoint dtype.
    """

    def __init__(self, path: Path):
        self.path = path
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{path}: truncated safetensors file (no header)")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100 << 20):
                raise InputError(f"{path}: corrupt safetensors header (length {n} > file size)")
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise InputError(f"{path}: corrupt safetensors header (not JSON)") from None
        header.pop("__metadata__", None)
        self.data_start = 8 + n
        self.entries: dict[str, dict] = header
        for name, e in header.items():
            if e.get("dtype") not in _DTYPES:
                raise InputError(f"{path}: tensor '{name}' has dtype {e.get('dtype')} (supported: F32, F16, BF16)")
            begin, end = e["data_offsets"]
            count = int(np.prod(e["shape"])) if e["shape"] else 1
            if end - begin != count * np.dtype(_DTYPES[e["dtype"]]).itemsize or self.data_start + end > size:
                raise InputError(f"{path}: tensor '{name}' data is truncated or inconsistent with its shape")

    def load(self, name: str) -> np.ndarray:
        e = self.entries[name]
        begin, end = e["data_offsets"]
        raw = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self.data_start + begin, shape=(end - begin,))
        dt = _DTYPES[e["dtype"]]
        a = raw.view(dt).reshape(e["shape"])
        if e["dtype"] == "BF16":
            return (a.astype(np.uint32) << 16).view(np.float32)
        return a.astype(np.float32)


def load_hf(folder: Path) -> ImportedModel:
    """Read a Hugging Face checkpoint folder lazily (weights are loaded when the compiler asks)."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    raw_cfg = _read_json(cfg_path)
    config = normalize_hf_config(raw_cfg, str(cfg_path))

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise InputError(f"{folder}: no *.safetensors weight files (PyTorch .bin checkpoints are not supported)")
    tensors = {}
    for f in files:
        st = SafetensorsFile(f)
        for name in st.entries:
            tensors[name] = (lambda st=st, name=name: st.load(name))

    tok_path = folder / "tokenizer.json"
    if not tok_path.exists():
        raise InputError(f"{tok_path}: file is missing (webllm needs the 'fast' tokenizer.json)")
    tokenizer_json = tok_path.read_text(encoding="utf-8")
    try:
        json.loads(tokenizer_json)
    except json.JSONDecodeError as e:
        raise InputError(f"{tok_path}: not valid JSON ({e})") from None
    tok_cfg = _read_json(folder / "tokenizer_config.json", required=False)
    if "chat_template" not in tok_cfg:
        jinja = folder / "chat_template.jinja"
        tmpl_json = _read_json(folder / "chat_template.json", required=False)
        if jinja.exists():
            tok_cfg["chat_template"] = jinja.read_text(encoding="utf-8")
        elif "chat_template" in tmpl_json:
            tok_cfg["chat_template"] = tmpl_json["chat_template"]
    gen_cfg = _read_json(folder / "generation_config.json", required=False)
    return ImportedModel(
        config=config,
        tensors=tensors,
        tokenizer_json=tokenizer_json,
        tokenizer_config=tok_cfg,
        generation_config=gen_cfg,
        source=str(folder),
    )
