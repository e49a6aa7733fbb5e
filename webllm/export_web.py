"""`export_site`: a plain static website that chats with LLMs in the browser (no server code).

The site is the browser bundle built in `web/dist/` (page, engine worker, service worker), the model
packages under `models/<id>/`, and `models.json`, the list the page's model picker shows. Any static
file server can serve it (`python -m http.server -d site`); after the first visit it works offline
(the service worker keeps the page and the packages' small files, the runtime keeps the verified
weight shards in Cache Storage).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from webllm.errors import InputError

BUNDLE_DIR = Path(__file__).resolve().parent.parent / "web" / "dist"
BUNDLE_FILES = ("index.html", "style.css", "app.js", "worker.js", "sw.js")


def bundle_dir() -> Path:
    """The built browser bundle; a one-line error saying how to build it when it is missing."""
    missing = [f for f in BUNDLE_FILES if not (BUNDLE_DIR / f).is_file()]
    if missing:
        raise InputError(f"the browser bundle is not built ({BUNDLE_DIR / missing[0]} is missing): "
                         "run `cd web && npm ci && npm run build` (scripts/install.sh does it)")
    return BUNDLE_DIR


def _model_id(package: Path, named: str | None, manifest: dict) -> str:
    """A URL-safe id: the package folder's name when a package was named, else the source's name and mode."""
    if named is not None and Path(named).is_dir() and (Path(named) / "manifest.json").exists():
        base = package.name
    else:
        src = (manifest.get("source") or {}).get("path") or package.name
        base = f"{Path(src).stem}-{manifest.get('quantization', '')}".rstrip("-")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "model"


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy a package folder, hard-linking files where the filesystem allows (shards are large)."""
    for root, _, files in os.walk(src):
        out = dst / Path(root).relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for f in files:
            target = out / f
            if target.exists():
                target.unlink()
            try:
                os.link(Path(root) / f, target)
            except OSError:
                shutil.copy2(Path(root) / f, target)


def export_site(out: str | Path, models: list[str | None] | None = None, *, quantization: str = "q4f16_1",
                include_test_harness: bool = False, progress: bool = True) -> Path:
    """Write the static site into `out` and return its models.json path.

    `models`: package folders, checkpoint folders or GGUF files (compiled once into the cache);
    None or [] means the embedded default model. The first model is the page's default."""
    from webllm.models_cache import resolve_model

    bundle = bundle_dir()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in BUNDLE_FILES:
        shutil.copy2(bundle / f, out / f)
    if include_test_harness and (bundle / "test").is_dir():
        shutil.copytree(bundle / "test", out / "test", dirs_exist_ok=True)

    entries = []
    for named in models or [None]:
        package = resolve_model(named, quantization, progress=progress)
        manifest = json.loads((package / "manifest.json").read_text())
        mid = _model_id(package, named, manifest)
        while any(e["id"] == mid for e in entries):
            mid += "-2"
        dst = out / "models" / mid
        if dst.exists():
            shutil.rmtree(dst)
        _copy_tree(package, dst)
        entries.append({
            "id": mid,
            "name": mid,
            "url": f"models/{mid}/",
            "bytes": sum(int(s["nbytes"]) for s in manifest["shards"]),
            "quantization": manifest.get("quantization"),
            "context_window": manifest.get("context_window"),
        })
    index = out / "models.json"
    index.write_text(json.dumps({"models": entries}, indent=1) + "\n")
    return index
