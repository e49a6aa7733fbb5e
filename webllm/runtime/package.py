"""Reading a model package: manifest checks, shard streaming with sha256 verification."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from webllm.compiler.package import FORMAT_NAME, FORMAT_VERSION, MANIFEST
from webllm.errors import AdapterError, PackageError


def read_manifest(folder: str | Path) -> dict:
    """Load and validate manifest.json; refuse unknown formats and versions clearly."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise PackageError(f"{folder}: not a model package folder")
    if not path.exists():
        raise PackageError(f"{path}: missing (is {folder} a webllm model package? build one with 'webllm compile')")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackageError(f"{path}: not valid JSON ({e})") from None
    if m.get("format") != FORMAT_NAME:
        raise PackageError(f"{path}: field 'format' is {m.get('format')!r}, expected {FORMAT_NAME!r}")
    v = m.get("format_version")
    if v != FORMAT_VERSION:
        raise PackageError(
            f"{path}: field 'format_version' is {v!r}; this webllm reads version {FORMAT_VERSION} "
            "(recompile the model with this webllm, or upgrade webllm)"
        )
    for key in ("config", "profiles", "profile_order", "shards", "tensors", "tokenizer", "context_window", "prefill_chunk"):
        if key not in m:
            raise PackageError(f"{path}: required field '{key}' is missing")
    return m


PLAN_FIELDS = ("profile", "uniform", "kernels", "buffers", "bind_groups", "prefill_variants", "decode_variants",
               "variant_features", "variant_limits")


def read_plan(folder: Path, manifest: dict, profile: str) -> dict:
    """Load plan-<profile>.json and check that it has every field a runtime reads."""
    path = Path(folder) / manifest["profiles"][profile]["plan"]
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackageError(f"{path}: file is missing") from None
    except json.JSONDecodeError as e:
        raise PackageError(f"{path}: not valid JSON ({e})") from None
    for key in PLAN_FIELDS:
        if key not in plan:
            raise PackageError(f"{path}: required field '{key}' is missing")
    for key in ("prefill_variants", "decode_variants"):
        if not plan[key]:
            raise PackageError(f"{path}: field '{key}' is empty")
    return plan


# WGSL language features a plan's `variant_features` may name beside device features (FORMAT.md): checked
# against the implementation's WGSL language features where it reports them (wgpu-py 0.32 reports none;
# its naga has these).
WGSL_LANGUAGE_FEATURES = {"packed_4x8_integer_dot_product"}


def wgsl_language_features() -> set[str]:
    import wgpu

    return set(getattr(wgpu.gpu, "wgsl_language_features", None) or ()) or set(WGSL_LANGUAGE_FEATURES)


def variant_lacks(plan: dict, name: str, features: set[str], limits: dict[str, int]) -> list[str]:
    """What the device lacks of variant `name`'s needs: its `variant_features` missing from `features`
    (or, for WGSL language features, from wgsl_language_features()) and its `variant_limits` above the
    device's `limits` (both in WebGPU's names), as ["subgroups", "maxComputeWorkgroupStorageSize 32768
    (device: 16384)"]; empty if it can run it."""
    wgsl = wgsl_language_features()
    lacks = [f for f in plan["variant_features"].get(name, ())
             if f not in (wgsl if f in WGSL_LANGUAGE_FEATURES else features)]
    for lim, v in plan["variant_limits"].get(name, {}).items():
        if limits.get(lim, 0) < v:
            lacks.append(f"{lim} {v} (device: {limits.get(lim, 0)})")
    return lacks


def usable_variants(plan: dict, kind: str, features: set[str], limits: dict[str, int]) -> list[str]:
    """Names of the plan's `<kind>_variants` ("prefill" or "decode") this device can run, in the plan's
    order (most preferred first): those whose `variant_features` it has and whose `variant_limits` its
    limits reach (WebGPU names)."""
    return [n for n in plan[f"{kind}_variants"] if not variant_lacks(plan, n, features, limits)]


def choose_profile(manifest: dict, features: set[str], requested: str | None, where: str = "") -> str:
    """The profile to run: `requested` if given, else the first of `profile_order` whose required
    features the device has. Raises PackageError / AdapterError with the reason."""
    profiles = manifest["profiles"]
    if requested is not None:
        if requested not in profiles:
            raise PackageError(f"{where}: has no profile {requested!r} (has: {', '.join(profiles)})")
        missing = set(profiles[requested]["requires_features"]) - features
        if missing:
            raise AdapterError(f"profile {requested!r} needs {sorted(missing)}, which this adapter lacks")
        return requested
    for name in manifest.get("profile_order", list(profiles)):
        if set(profiles[name]["requires_features"]) <= features:
            return name
    raise AdapterError(f"{where}: no profile of this package runs on this adapter "
                       f"(profiles: {', '.join(profiles)}; the adapter lacks shader-f16)")


def iter_shards(folder: Path, manifest: dict) -> Iterator[tuple[int, bytes]]:
    """Yield (shard index, bytes) for each shard after checking its size and sha256."""
    for i, s in enumerate(manifest["shards"]):
        path = Path(folder) / s["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PackageError(f"{path}: weight shard is missing") from None
        if len(data) != s["nbytes"]:
            raise PackageError(f"{path}: weight shard has {len(data)} bytes, the manifest says {s['nbytes']} (truncated?)")
        if hashlib.sha256(data).hexdigest() != s["sha256"]:
            raise PackageError(f"{path}: sha256 mismatch (corrupt download?); delete it and fetch or compile again")
        yield i, data


def context_size(buffer: dict, capacity: int) -> int:
    """Bytes of a plan buffer for a KV capacity of `capacity` tokens (FORMAT.md, `per_context`)."""
    rule = buffer.get("per_context")
    if rule is None:
        return buffer["size"]
    return max(16, (-(-capacity // rule["unit"]) * rule["bytes"] + 15) // 16 * 16)
