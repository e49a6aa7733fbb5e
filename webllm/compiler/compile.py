"""The compile pipeline: import -> quantize + fuse -> split over binding limits -> shards -> lower per
profile (memory plan, kernel specialization) -> manifest. Pure functions over the imported model,
plus the package writer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from webllm import __version__
from webllm import kernels as K
from webllm.compiler.lower import INT8_READERS, MatrixInfo, MatrixPart, lower
from webllm.compiler.package import FORMAT_NAME, FORMAT_VERSION, MANIFEST, AtomicDir, ShardWriter, write_json
from webllm.errors import UnsupportedModelError
from webllm.importers import load_model
from webllm.importers.base import ImportedModel
from webllm.models.llama import LlamaModel, concat_rows
from webllm.quantization.formats import PackedWeight
from webllm.quantization.quantize import get_mode

DEFAULT_MAX_BINDING = 128 << 20  # WebGPU's default maxStorageBufferBindingSize: fits every adapter


@dataclass(frozen=True)
class CompileOptions:
    quantization: str = "q4f16_1"
    context_window: int | None = None  # default: min(model's max positions, 4096)
    prefill_chunk: int = 128
    max_binding_size: int = DEFAULT_MAX_BINDING
    progress: bool = True
    gemv_lanes: tuple[int, ...] = (32, 4)  # one-token matmul variants, threads per row (runtimes pick by timing)
    decode_splits: int | None = None  # most KV splits of decode attention (None: lower.decode_splits per profile)
    decode_heads: int | None = None  # query heads per decode attention workgroup (None: kernels.attention_decode_heads)
    subgroups: bool = True  # also each one-token matmul variant with the subgroup reduction
    prefill_tiles: tuple[int, ...] = (32, 128)  # prefill variants: these token tiles on every matrix, besides the rule
    prefill_wide: bool = True  # prefill variants whose 128-token matmuls stage whole groups (32 KiB workgroup memory)
    prefill_half: bool = False  # f16 profile: also the rule and the tiles with the matmuls in f16 arithmetic (less precise)
    decode_int8: bool = True  # also decode variants ("q8...") passing x on as int8 blocks to q4s readers (lower.int8_edges)
    decode_int8_formats: tuple[str, ...] = INT8_READERS  # the readers' weight formats that take int8 x
    prefill_int8: bool = True  # also the "q8" prefill variant: q4s/q4a/q8s matmuls multiply int8 blocks of x (kernels.matmul_q8)
    decode_wide: bool = True  # also decode variants ("...w"): matmuls of up to 512 threads a workgroup (kernels.gemv_threads)


def _split(name: str, w: PackedWeight, pair: bool, limit: int) -> list[tuple[str, int, int, PackedWeight]]:
    """Cut a matrix into row ranges whose arrays each fit `limit` bytes: [(tensor, row0, rows, part)]."""
    n, _ = w.shape
    per_row = max(a.nbytes / n for a in w.arrays.values()) * (2 if pair else 1)
    out_rows = n // 2 if pair else n
    rows = out_rows if per_row * out_rows <= limit else max(8, int(limit // per_row) // 8 * 8)
    if rows >= out_rows:
        return [(name, 0, out_rows, w)]
    parts = []
    for i, lo in enumerate(range(0, out_rows, rows)):
        hi = min(out_rows, lo + rows)
        if pair:
            part = concat_rows([w.row_slice(lo, hi), w.row_slice(out_rows + lo, out_rows + hi)])
        else:
            part = w.row_slice(lo, hi)
        parts.append((f"{name}.part{i}", lo, hi - lo, part))
    return parts


def _tokenizer_meta(imported: ImportedModel) -> dict:
    """Special token ids, resolved once here so neither runtime needs tokenizer_config logic."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(imported.tokenizer_json)
    tc, gc, cfg = imported.tokenizer_config, imported.generation_config, imported.config

    def tok_text(v):
        return v.get("content") if isinstance(v, dict) else v

    def tid(v):
        t = tok_text(v)
        return tok.token_to_id(t) if t else None

    eos = list(cfg.eos_token_id)
    g = gc.get("eos_token_id")
    for e in [g] if isinstance(g, int) else (g or []):
        eos.append(int(e))
    if tid(tc.get("eos_token")) is not None:
        eos.append(tid(tc.get("eos_token")))
    bos_id = tid(tc.get("bos_token"))
    if bos_id is None:
        bos_id = gc.get("bos_token_id", cfg.bos_token_id)
    return {
        "file": "tokenizer.json",
        "bos_token": tok_text(tc.get("bos_token")),
        "eos_token": tok_text(tc.get("eos_token")),
        "bos_token_id": bos_id,
        "eos_token_ids": sorted(set(eos)),
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
    }


def compile_model(source: str | Path, output: str | Path, options: CompileOptions = CompileOptions()) -> Path:
    """Compile a checkpoint (HF folder or GGUF file) into a model package folder at `output`."""
    mode = get_mode(options.quantization)
    imported = load_model(source)
    cfg = imported.config
    ctx = options.context_window if options.context_window is not None else min(cfg.max_position_embeddings, 4096)
    if ctx < 1 or ctx > cfg.max_position_embeddings:
        raise UnsupportedModelError(
            f"--context-window {ctx}: must be between 1 and the model's max_position_embeddings ({cfg.max_position_embeddings})"
        )
    if options.prefill_chunk < 1 or options.prefill_chunk > 4096:
        raise UnsupportedModelError(f"--prefill-chunk {options.prefill_chunk}: must be between 1 and 4096")
    if not set(options.prefill_tiles) <= {32, 64, 128}:
        raise UnsupportedModelError(f"--prefill-tiles {','.join(map(str, options.prefill_tiles))}: each must be 32, 64 or 128")
    model = LlamaModel(imported, mode, ctx)
    limit = options.max_binding_size
    with AtomicDir(output) as tmp:
        shards = ShardWriter(tmp)
        matrices: dict[str, MatrixInfo] = {}
        names = model.weight_names()
        bar = tqdm(total=len(names), desc="compile", unit="tensor", disable=not options.progress)
        for name, w in model.iter_weights():
            bar.set_postfix_str(name, refresh=False)
            if isinstance(w, PackedWeight):
                pair = name.endswith("gate_up")
                info = MatrixInfo(name, w.format, w.scale_dtype, w.shape, pair)
                for tname, row0, rows, part in _split(name, w, pair, limit):
                    info.parts.append(MatrixPart(tname, row0, rows))
                    for aname in K.WEIGHT_ARRAYS[part.format]:
                        a = part.arrays[aname]
                        shards.add(f"{tname}.{aname}", a, [int(a.size)])
                matrices[name] = info
            else:
                v = np.asarray(w, np.float32)
                base = name[: -len(".bias")] if name.endswith(".bias") else None
                if base in matrices and len(matrices[base].parts) > 1:
                    m = matrices[base]
                    half = m.shape[0] // 2
                    for p in m.parts:
                        rows = v[p.row0 : p.row0 + p.rows]
                        if m.pair:
                            rows = np.concatenate([rows, v[half + p.row0 : half + p.row0 + p.rows]])
                        p.bias = f"{p.tensor}.bias"
                        shards.add(p.bias, rows, [int(rows.size)])
                else:
                    if v.nbytes > limit:
                        fix = ("lower --context-window" if name == "rope_table"  # the only one that grows with it
                               else f"raise --max-binding-size to at least {v.nbytes}")
                        raise UnsupportedModelError(f"tensor {name}: {v.nbytes} bytes exceed the binding limit {limit} ({fix})")
                    if base in matrices:
                        matrices[base].parts[0].bias = name
                    shards.add(name, v, [int(v.size)])
            bar.update(1)
        bar.close()
        shards.finish()

        profiles = {}
        kernel_dir = tmp / "kernels"
        kernel_dir.mkdir()
        weight_bytes = sum(t["size"] for t in shards.tensors.values())
        for pname in mode.profiles:
            plan = lower(model, matrices, K.Profile(pname), options.prefill_chunk, tuple(options.gemv_lanes), limit,
                         options.decode_splits, decode_heads=options.decode_heads,
                         subgroups=options.subgroups, prefill_tiles=tuple(options.prefill_tiles),
                         prefill_wide=options.prefill_wide, prefill_half=options.prefill_half,
                         decode_int8=options.decode_int8, decode_int8_formats=tuple(options.decode_int8_formats),
                         prefill_int8=options.prefill_int8, decode_wide=options.decode_wide)
            for kname, src in plan.pop("_sources").items():
                (kernel_dir / f"{kname}.wgsl").write_text(src, encoding="utf-8")
            for b in plan["buffers"]:
                if b["size"] > limit:
                    raise UnsupportedModelError(
                        f"buffer {b['name']} ({b['size']} bytes) exceeds the binding limit {limit}: "
                        "lower --context-window or --prefill-chunk")
            write_json(tmp / f"plan-{pname}.json", plan)
            act = sum(b["size"] for b in plan["buffers"] if not b.get("optional"))
            profiles[pname] = {"plan": f"plan-{pname}.json", "requires_features": plan["requires_features"],
                               "memory_bytes": weight_bytes + act, "weight_bytes": weight_bytes, "buffer_bytes": act}

        (tmp / "tokenizer.json").write_text(imported.tokenizer_json, encoding="utf-8")
        gen = {k: imported.generation_config[k] for k in ("temperature", "top_p", "top_k", "repetition_penalty")
               if k in imported.generation_config}
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "compiler": f"webllm {__version__}",
            "source": {"path": str(source), "sha256": imported.source_sha256},
            "config": cfg.to_dict(),
            "quantization": mode.name,
            "context_window": ctx,
            "prefill_chunk": options.prefill_chunk,
            "max_binding_size": limit,
            "tokenizer": _tokenizer_meta(imported),
            "chat_template": imported.tokenizer_config.get("chat_template"),
            "generation": gen,
            "profile_order": [p for p in ("f16", "f32") if p in profiles],
            "profiles": profiles,
            "shards": shards.shards,
            "tensors": shards.tensors,
        }
        write_json(tmp / MANIFEST, manifest)
    return Path(output)


__all__ = ["CompileOptions", "compile_model"]
