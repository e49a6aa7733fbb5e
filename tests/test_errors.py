"""Bad inputs fail with a named webllm error whose single-line message names the culprit (file,
tensor or field); the output folder is never left half-written; tensors over the adapter's storage
binding limit are refused at load, or split at compile time and still match transformers."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tiny_models import TOL_F16, TOL_F32, TOL_INT8, Spec, prompt_ids, record, rel_err

from webllm.compiler.compile import CompileOptions, compile_model
from webllm.config import SUPPORTED_ARCHITECTURES
from webllm.errors import AdapterError, InputError, PackageError, UnsupportedModelError, WebLLMError
from webllm.runtime import Model

BASE = Spec("errors_llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=301, seed=7)
FAST = CompileOptions(quantization="q0f32", context_window=64, prefill_chunk=16, progress=False)


def raises(exc_type, fn, *needles: str) -> str:
    """Call fn; assert it raises exactly `exc_type` (a WebLLMError) with a one-line message holding every needle."""
    with pytest.raises(WebLLMError) as info:
        fn()
    msg = str(info.value)
    assert type(info.value) is exc_type, f"{type(info.value).__name__}: {msg}"
    assert "\n" not in msg, f"message is not one line: {msg!r}"
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


@pytest.fixture
def ckpt(zoo, tmp_path) -> Path:
    """A private, mutable copy of a valid tiny checkpoint."""
    dst = tmp_path / "ckpt"
    shutil.copytree(zoo.checkpoint(BASE), dst)
    return dst


@pytest.fixture
def package(zoo, tmp_path) -> Path:
    """A private, mutable copy of a valid q0f32 package."""
    dst = tmp_path / "pkg"
    shutil.copytree(zoo.package(BASE, "q0f32", context_window=64, prefill_chunk=16), dst)
    return dst


def compile_to(src: Path, out: Path, options: CompileOptions = FAST):
    return lambda: compile_model(src, out, options)


def edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


# ---- checkpoint folders ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_checkpoint_file(ckpt, tmp_path, name):
    """Each required checkpoint file, when absent, is named (safetensors: the folder and the format)."""
    (ckpt / name).unlink()
    needles = (str(ckpt), "*.safetensors") if name.endswith(".safetensors") else (str(ckpt / name), "missing")
    raises(InputError, compile_to(ckpt, tmp_path / "out"), *needles)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
def test_corrupt_json(ckpt, tmp_path, name):
    (ckpt / name).write_text('{"hidden_size": 64,')
    raises(InputError, compile_to(ckpt, tmp_path / "out"), str(ckpt / name), "JSON")


def test_truncated_safetensors(ckpt, tmp_path):
    """A safetensors file cut short (interrupted download) is refused before any weight is read."""
    f = ckpt / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    raises(InputError, compile_to(ckpt, tmp_path / "out"), str(f), "truncated")


def test_safetensors_with_garbage_header(ckpt, tmp_path):
    f = ckpt / "model.safetensors"
    f.write_bytes(b"\xff" * 8 + f.read_bytes()[8:])
    raises(InputError, compile_to(ckpt, tmp_path / "out"), str(f), "header")


def test_unsupported_architecture_names_the_supported_ones(ckpt, tmp_path):
    from transformers import GPT2Config

    cfg = GPT2Config(n_layer=1, n_embd=64, n_head=4, vocab_size=301).to_dict()
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    raises(UnsupportedModelError, compile_to(ckpt, tmp_path / "out"), "GPT2LMHeadModel", str(ckpt / "config.json"),
           *SUPPORTED_ARCHITECTURES)


@pytest.mark.parametrize("field,value,needles", [
    # transformers v4 style: rope_scaling {"type": ...}
    ("rope_scaling", {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256},
     ("rope_scaling", "'yarn'", "llama3")),
    # transformers v5 style: rope_parameters {"rope_type": ...}
    ("rope_parameters", {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0}, ("rope", "'yarn'", "llama3")),
    ("hidden_act", "gelu", ("hidden_act", "'gelu'", "silu")),
    ("partial_rotary_factor", 0.5, ("partial_rotary_factor",)),
    ("num_key_value_heads", 3, ("num_key_value_heads", "(3)", "(4)")),
])
def test_unsupported_config_field(ckpt, tmp_path, field, value, needles):
    """A config value the kernels do not implement is refused by field name (with what is supported)."""
    edit_config(ckpt, **{field: value})
    raises(UnsupportedModelError, compile_to(ckpt, tmp_path / "out"), str(ckpt / "config.json"), *needles)


def test_unknown_quantization_and_bad_sizes(ckpt, tmp_path):
    out = tmp_path / "out"
    raises(UnsupportedModelError, compile_to(ckpt, out, CompileOptions(quantization="q3f16", progress=False)),
           "'q3f16'", "q4f16_1", "q0f32")
    raises(UnsupportedModelError, compile_to(ckpt, out, CompileOptions(quantization="q0f32", context_window=4096,
                                                                       progress=False)), "--context-window 4096")
    raises(UnsupportedModelError, compile_to(ckpt, out, CompileOptions(quantization="q0f32", prefill_chunk=0,
                                                                       progress=False)), "--prefill-chunk 0")
    raises(UnsupportedModelError, compile_to(ckpt, out, replace(FAST, decode_heads=3)), "--decode-heads 3", "2 query heads")
    assert not out.exists()


# ---- the output folder is replaced atomically or left alone -------------------------------------------

def drop_tensor(folder: Path, name: str) -> None:
    from safetensors.numpy import load_file, save_file

    f = folder / "model.safetensors"
    tensors = load_file(f)
    del tensors[name]
    save_file(tensors, f, metadata={"format": "pt"})


def test_failed_compile_leaves_no_output(ckpt, tmp_path):
    """A checkpoint missing a late tensor fails after shards were written: no output and no temp folder."""
    missing = "model.layers.1.mlp.down_proj.weight"
    drop_tensor(ckpt, missing)
    parent = tmp_path / "outputs"
    parent.mkdir()
    raises(InputError, compile_to(ckpt, parent / "pkg"), missing)
    assert list(parent.iterdir()) == []


def test_failed_compile_keeps_the_previous_package(ckpt, package, tmp_path):
    before = {p.name: p.read_bytes() for p in package.rglob("*") if p.is_file()}
    drop_tensor(ckpt, "model.layers.1.mlp.down_proj.weight")
    raises(InputError, compile_to(ckpt, package), "down_proj")
    assert {p.name: p.read_bytes() for p in package.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in package.parent.iterdir()) == ["ckpt", "pkg"]


def test_compile_replaces_an_existing_package(ckpt, package):
    """Compiling onto a package replaces it whole: new manifest, stale files gone, no leftovers beside it."""
    (package / "stale.bin").write_bytes(b"old")
    compile_model(ckpt, package, CompileOptions(quantization="q0f16", context_window=64, prefill_chunk=16,
                                                progress=False))
    assert json.loads((package / "manifest.json").read_text())["quantization"] == "q0f16"
    assert not (package / "stale.bin").exists()
    assert sorted(p.name for p in package.parent.iterdir()) == ["ckpt", "pkg"]


def test_compile_refuses_a_non_package_folder(ckpt, tmp_path):
    out = tmp_path / "mydocs"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    raises(InputError, compile_to(ckpt, out), str(out), "not a model package")
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    (tmp_path / "notes.txt").write_text("precious")
    raises(InputError, compile_to(ckpt, tmp_path / "notes.txt"), str(tmp_path / "notes.txt"), "not a model package")
    assert (tmp_path / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "mydocs", "notes.txt"]


# ---- packages ------------------------------------------------------------------------------------------

def load(package: Path, zoo, **kw):
    return lambda: Model.load(package, progress=False, adapter=zoo.adapter, device=zoo.device, **kw)


def test_corrupt_shard_is_named(package, zoo):
    """One flipped byte in a weight shard fails its sha256 check; the message names the shard file."""
    shard = package / "weights-00000.bin"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    raises(PackageError, load(package, zoo), str(shard), "sha256")


def test_missing_and_truncated_shard(package, zoo):
    shard = package / "weights-00000.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-4])
    raises(PackageError, load(package, zoo), str(shard), "bytes")
    shard.unlink()
    raises(PackageError, load(package, zoo), str(shard), "missing")


@pytest.mark.parametrize("version", [1, 2, 3, 5, None])  # 1: before the plan described itself; 2: before variants;
# 3: before variant_limits
def test_unknown_format_version(package, zoo, version):
    path = package / "manifest.json"
    m = json.loads(path.read_text())
    m["format_version"] = version
    path.write_text(json.dumps(m))
    raises(PackageError, load(package, zoo), str(path), "format_version", repr(version))


def test_not_a_package(package, zoo, tmp_path):
    (package / "manifest.json").unlink()
    raises(PackageError, load(package, zoo), "manifest.json")
    raises(PackageError, load(tmp_path / "nowhere", zoo), "nowhere")


def test_missing_kernel_or_plan(package, zoo):
    plan = package / "plan-f32.json"
    kernel = next((package / "kernels").iterdir())
    kernel.unlink()
    raises(PackageError, load(package, zoo), str(kernel))
    plan.unlink()
    raises(PackageError, load(package, zoo), str(plan))


def test_profile_the_package_lacks(package, zoo):
    raises(PackageError, load(package, zoo, profile="f16"), "'f16'", "f32")


def test_tensor_over_the_binding_limit_is_refused_at_load(zoo):
    """An adapter whose storage binding limit is below a tensor's size gets an AdapterError naming the
    first such tensor and the --max-binding-size to recompile with, before any GPU allocation."""
    pkg = zoo.package(BASE, "q0f32", context_window=64, prefill_chunk=16)
    tensors = json.loads((pkg / "manifest.json").read_text())["tensors"]
    limit = 20000
    first = next(name for name, t in tensors.items() if t["nbytes"] > limit)
    assert first == "embed.weight"  # 301 x 64 f32
    raises(AdapterError, load(pkg, zoo, max_binding_size=limit), f"tensor {first} ", str(limit),
           f"--max-binding-size {limit}")


def test_binding_limit_errors_name_the_buffer(zoo, tmp_path):
    """With a long context the KV cache is the largest buffer: a limit between the largest tensor and the
    cache size fails the compile (naming the buffer and the options to lower), and a package compiled
    without that limit fails to load on such an adapter with an AdapterError saying the same. (4 KV
    heads: the cache, f16 in both profiles, then grows faster with the context than the rope table.)"""
    mha = replace(BASE, name="errors_mha", num_key_value_heads=4)
    pkg = zoo.package(mha, "q0f32", context_window=1024, prefill_chunk=16)
    manifest = json.loads((pkg / "manifest.json").read_text())
    limit = 100_000
    assert max(t["nbytes"] for t in manifest["tensors"].values()) <= limit < 1024 * 4 * 16 * 2  # k_cache.0
    raises(AdapterError, load(pkg, zoo, max_binding_size=limit), "buffer k_cache.0", str(limit), "--context-window")
    opts = CompileOptions(quantization="q0f32", context_window=1024, prefill_chunk=16, max_binding_size=limit,
                          progress=False)
    raises(UnsupportedModelError, compile_to(zoo.checkpoint(mha), tmp_path / "out", opts), "buffer k_cache.0",
           str(limit), "--context-window")
    # a limit below a vector that cannot be split (the rope table: context x head_dim f32)
    opts = CompileOptions(quantization="q0f32", context_window=1024, max_binding_size=4096, progress=False)
    raises(UnsupportedModelError, compile_to(zoo.checkpoint(BASE), tmp_path / "out", opts), "tensor rope_table",
           "4096", "--context-window")
    assert list(tmp_path.iterdir()) == []


def test_runtime_input_errors(zoo):
    """Out-of-vocabulary ids and a full context window are refused before anything is dispatched."""
    rt = zoo.runtime(BASE, "q0f32", "f32", context_window=64, prefill_chunk=16)
    raises(WebLLMError, lambda: rt.prefill([]), "at least one token")
    raises(WebLLMError, lambda: rt.prefill([5, 301]), "301", "[0, 301)")
    raises(WebLLMError, lambda: rt.prefill([-1]), "-1")
    assert rt.past == 0
    rt.prefill(list(range(60)))
    raises(WebLLMError, lambda: rt.prefill(list(range(5))), "60 + 5", "64")
    for _ in range(4):
        rt.decode()
    raises(WebLLMError, rt.decode, "64")
    assert rt.past == 64
    rt.reset()
    raises(WebLLMError, lambda: list(rt.generate(list(range(65)), 1)), "64")


# ---- compiling for a small binding limit splits tensors; the split package still matches transformers ----

# Sizes are chosen so that, at the given limit, the embedding/lm_head, the [gate; up] pair (with its
# bias, split pairwise), down (with bias) and [q; k; v] (with Qwen2's bias) are cut into parts, with a
# short last part, while every activation buffer still fits: at 64 KiB, f32 embed rows are 256 B, so
# vocab 515 -> parts of 256, 256, 3 rows.
SPLIT_QWEN2 = Spec("split_qwen2", arch="qwen2", hidden_size=64, intermediate_size=384, num_hidden_layers=2,
                   num_attention_heads=6, num_key_value_heads=2, head_dim=32, vocab_size=515, seed=11)
SPLIT_LLAMA = Spec("split_llama_bias", hidden_size=64, intermediate_size=384, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=32, vocab_size=515,
                   tie_word_embeddings=True, attention_bias=True, mlp_bias=True, seed=12)
SPLITS = [  # spec, mode, profiles, compile options, tensors that must come out split (with >= 2 parts)
    pytest.param(SPLIT_QWEN2, "q0f32", ("f32",), dict(max_binding_size=64 << 10, context_window=128, prefill_chunk=32),
                 ["embed", "lm_head", "layers.0.qkv", "layers.0.gate_up", "layers.0.down"], id="qwen2-q0f32"),
    pytest.param(SPLIT_LLAMA, "q0f32", ("f32",), dict(max_binding_size=64 << 10, context_window=128, prefill_chunk=32),
                 ["embed", "layers.1.gate_up", "layers.1.down"], id="llama_bias_tied-q0f32"),
    # q4: rows are 36 bytes (32 of nibbles, 4 of f16 scales), so the limit must be tiny, and with it the
    # context (32) and prefill chunk (4): an unusual but valid package, crossing its chunk many times.
    pytest.param(SPLIT_QWEN2, "q4f16_1", ("f16", "f32"), dict(max_binding_size=8 << 10, context_window=32,
                                                               prefill_chunk=4),
                 ["embed", "lm_head", "layers.0.qkv", "layers.1.gate_up", "layers.1.down"], id="qwen2-q4f16_1"),
]


@pytest.mark.parametrize("spec,mode,profiles,opts,split", SPLITS)
def test_split_package_matches_transformers(zoo, spec, mode, profiles, opts, split):
    """Matrices over --max-binding-size are cut into row parts (one matmul / embed dispatch per part,
    biases cut alike, [gate; up] cut pairwise); logits after prefill and decode still match transformers
    within the profile's usual tolerance (see test_reference), and the runtime accepts the package on an
    adapter with exactly that limit."""
    pkg = zoo.package(spec, mode, **opts)
    tensors = json.loads((pkg / "manifest.json").read_text())["tensors"]
    limit = opts["max_binding_size"]
    assert max(t["nbytes"] for t in tensors.values()) <= limit
    for name in split:
        assert f"{name}.part1.{'weight' if mode.startswith('q0') else 'qweight'}" in tensors, name
        assert not any(t.startswith(name + ".weight") or t.startswith(name + ".qweight") for t in tensors), name
    biased = [n for n in split if (n.endswith("qkv") and (spec.arch == "qwen2" or spec.attention_bias))
              or (n.endswith(("gate_up", "down")) and spec.mlp_bias)]
    assert biased
    for name in biased:
        assert f"{name}.part0.bias" in tensors and f"{name}.part1.bias" in tensors, name

    ctx = opts["context_window"]
    prompt = [int(i) for i in prompt_ids(spec, ctx - 8)]
    runs = [(p, False) for p in profiles]
    if mode.startswith("q4"):  # the int8 decode variants too (test_reference), where the writer's rows are cut in parts
        runs += [(p, True) for p in profiles]
    for profile, int8 in runs:
        tol = TOL_INT8[profile] if int8 else TOL_F16 if profile == "f16" else TOL_F32
        rt = Model.load(pkg, profile=profile, max_binding_size=limit, progress=False, adapter=zoo.adapter,
                        device=zoo.device, prefill_variant="rule")  # the float prefill: the tolerances above
        rt.use_decode_variant(next(n for n in rt.decode_variants if n.startswith("q8") == int8))
        seq = list(prompt)
        rt.prefill(seq)
        got = [rt.logits()]
        for _ in range(8):
            seq.append(rt.next_token())
            rt.decode()
            got.append(rt.logits())
        ref = zoo.logits(spec, mode, seq, decoded_from=len(prompt) if int8 else None)[len(prompt) - 1 :]
        errs = [rel_err(g, r) for g, r in zip(got, ref, strict=True)]
        record(mode + ("+int8" if int8 else ""), profile, max(errs))
        assert max(errs) <= tol, f"{spec.name} {mode}/{profile} split: errors {np.round(errs, 6)} > {tol:.0e}"
