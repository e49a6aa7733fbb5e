"""Writing a model package: weight shards with sha256, atomically (temp dir, then rename)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from webllm.errors import InputError

SHARD_BYTES = 32 << 20  # at most 32 MiB per shard: good for the browser's Cache Storage
FORMAT_NAME = "webllm-package"
FORMAT_VERSION = 4
MANIFEST = "manifest.json"


class ShardWriter:
    """Appends arrays to shard files of at most SHARD_BYTES; a large array spans several shards."""

    def __init__(self, folder: Path, shard_bytes: int = SHARD_BYTES):
        self.folder = folder
        self.limit = shard_bytes
        self.shards: list[dict] = []
        self.tensors: dict[str, dict] = {}
        self._f = None
        self._h = None
        self._used = 0

    def _open(self) -> None:
        self._close()
        name = f"weights-{len(self.shards):05d}.bin"
        self._f = open(self.folder / name, "wb")
        self._h = hashlib.sha256()
        self._used = 0
        self.shards.append({"file": name, "nbytes": 0, "sha256": "", "uploads": []})

    def _close(self) -> None:
        if self._f is not None:
            self._f.close()
            self.shards[-1]["nbytes"] = self._used
            self.shards[-1]["sha256"] = self._h.hexdigest()
            self._f = None

    def add(self, name: str, array: np.ndarray, shape: list[int]) -> None:
        data = np.ascontiguousarray(array).reshape(-1)
        dtype = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.uint32): "u32"}[data.dtype]
        raw = memoryview(data.view(np.uint8))
        pos = 0
        while pos < len(raw):
            if self._f is None or self._used >= self.limit:
                self._open()
            n = min(len(raw) - pos, self.limit - self._used)
            self._f.write(raw[pos : pos + n])
            self._h.update(raw[pos : pos + n])
            self.shards[-1]["uploads"].append([name, pos, self._used, n])
            self._used += n
            pos += n
        # the GPU buffer: 16-byte multiple, never empty (FORMAT.md, `tensors`)
        self.tensors[name] = {"dtype": dtype, "shape": shape, "nbytes": len(raw), "size": max(16, (len(raw) + 15) // 16 * 16)}

    def finish(self) -> None:
        self._close()


class AtomicDir:
    """A temp folder beside `target` that replaces it on commit() and vanishes on failure."""

    def __init__(self, target: Path):
        self.target = Path(target).resolve()
        if self.target.exists() and not self.target.is_dir():
            raise InputError(f"{self.target}: output path exists and is a file, not a model package folder; "
                             "not overwriting it")
        if self.target.exists() and not (self.target / MANIFEST).exists() and any(self.target.iterdir()):
            raise InputError(f"{self.target}: output folder exists and is not a model package; not overwriting it")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent))

    def commit(self) -> None:
        old = None
        if self.target.exists():
            old = self.target.parent / f".{self.target.name}.old-{self.tmp.name[-8:]}"
            self.target.rename(old)
        self.tmp.rename(self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n", encoding="utf-8")
