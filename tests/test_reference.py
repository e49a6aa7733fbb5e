"""Compiled packages against transformers (torch, CPU, fp32): logits after prefill and decode, and
greedy continuations, over a matrix of tiny random-weight Llama-family models.

Quantized modes are compared with transformers run on the *dequantized* weights (the exact values
the kernels multiply by), so these tests measure kernel and runtime error only, never quantization
error. Errors are max |ours - transformers| / max |transformers logits| over the vocabulary.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TOL_F16, TOL_F32, TOL_INT8, Spec, prompt_ids, read_tensor, record, rel_err

from webllm.compiler.compile import CompileOptions, compile_model
from webllm.config import normalize_hf_config
from webllm.models.llama import rope_pair_order
from webllm.quantization.formats import PackedWeight, dequantize

LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0,
               # small, so the 300-token prompts reach positions where all three llama3 bands matter
               "original_max_position_embeddings": 64}

SPECS = [
    # GQA 1 (multi-head), head_dim 32 = hidden/heads, untied, vocab 301
    Spec("llama_mha", hidden_size=64, num_attention_heads=2, num_key_value_heads=2, vocab_size=301),
    # GQA 4, head_dim 64, llama3 rope scaling, tied embeddings, one layer, vocab 1003; intermediate 1088
    # = 34 groups of 32: a long reduction whose group count is no power of two (more groups than lanes)
    Spec("llama3_gqa4_tied", hidden_size=256, intermediate_size=1088, num_hidden_layers=1, num_attention_heads=4,
         num_key_value_heads=1, vocab_size=1003, tie_word_embeddings=True, rope_parameters=LLAMA3_ROPE, seed=1),
    # GQA 2, head_dim 128 != hidden/heads (64), three layers
    Spec("llama_hd128", hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=2,
         num_key_value_heads=1, head_dim=128, vocab_size=515, seed=2),
    # Llama with attention_bias (q, k, v and o) and mlp_bias (gate, up, down), four layers, tied
    Spec("llama_bias", hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
         num_key_value_heads=2, head_dim=32, vocab_size=1003, tie_word_embeddings=True, attention_bias=True,
         mlp_bias=True, seed=3),
    # Qwen2: q/k/v biases (random, nonzero), no o bias, GQA 2
    Spec("qwen2", arch="qwen2", hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=2, vocab_size=1003, seed=4),
    # Mistral with a 16-token sliding window (the 300-token prompts cross it), GQA 4, head_dim 32 != 64/4
    Spec("mistral_window16", arch="mistral", hidden_size=64, intermediate_size=192, num_hidden_layers=2,
         num_attention_heads=4, num_key_value_heads=1, head_dim=32, vocab_size=301, sliding_window=16, seed=5),
]
SPEC_IDS = [s.name for s in SPECS]
BY_NAME = {s.name: s for s in SPECS}

# 300 crosses a 32-token prefill chunk nine times and ends in a partial chunk (12 tokens), and 1 and 7
# are partial chunks too; one spec uses 64 to vary the chunk. The context window is just large enough:
# a 300-token prompt plus 16 decode steps fills it exactly (and 316 is no power of two).
CHUNK = {"llama3_gqa4_tied": 64}
CONTEXT = 316
PREFILL_LENGTHS = (1, 7, 64, 300)
DECODE_STEPS = 16


def options(spec: Spec) -> dict:
    return {"prefill_chunk": CHUNK.get(spec.name, 32), "context_window": CONTEXT}


# Every spec runs the two profiles' main paths (q0f32 and q0f16 on f16). The other weight formats and
# profiles only change how matmul/embed kernels load weights and which activation type they store, so
# they run on the three specs that together hold every matrix shape and feature (tied and untied
# heads, every bias, 1-4 layers, K > 32 groups): the full product would double the suite's time.
FULL = [("q0f32", "f32", TOL_F32), ("q0f16", "f16", TOL_F16)]
PARTIAL = [
    ("q0f16", "f32", TOL_F32),  # browsers without shader-f16 run the f32 profile of f16 packages
    ("q4f16_1", "f16", TOL_F16),
    ("q4f16_1", "f32", TOL_F32),
    ("q4f32_1", "f32", TOL_F32),
]
PARTIAL_SPECS = ("llama3_gqa4_tied", "llama_bias", "qwen2")
CASES = [pytest.param(s, m, p, t, id=f"{s.name}-{m}-{p}") for s in SPECS for m, p, t in FULL] + [
    pytest.param(s, m, p, t, id=f"{s.name}-{m}-{p}") for s in SPECS for m, p, t in PARTIAL if s.name in PARTIAL_SPECS]


@pytest.mark.parametrize("n", PREFILL_LENGTHS)
@pytest.mark.parametrize("spec,mode,profile,tol", CASES)
def test_prefill_logits_match_transformers(zoo, spec, mode, profile, tol, n):
    """Last-token logits after a fresh prefill of n tokens equal transformers' within the profile's tolerance."""
    rt = zoo.runtime(spec, mode, profile, **options(spec))
    ids = prompt_ids(spec)
    rt.prefill(ids[:n])
    got = rt.logits()
    ref = zoo.logits(spec, mode, ids)[n - 1]  # causal: position n-1 of the full prompt = prefix of n
    err = rel_err(got, ref)
    record(mode, profile, err)
    assert err <= tol, f"{spec.name} {mode}/{profile} prefill {n}: error {err:.2e} > {tol:.0e}"
    assert rt.next_token() == int(np.argmax(got)), "the GPU's greedy token is not argmax of its own logits"


def decode_errors(zoo, rt, spec: Spec, mode: str, prompt_len: int, int8: bool = False) -> list[float]:
    """Prefill prompt_len tokens, then DECODE_STEPS decode steps, each fed the GPU's greedy token: the
    error of the logits after the prefill and after every step against transformers' full forward
    over the same sequence (`int8`: whose decode steps round the inputs the package rounds to int8)."""
    seq = [int(i) for i in prompt_ids(spec, max(300, prompt_len))[:prompt_len]]
    rt.prefill(seq)
    got = [rt.logits()]
    for _ in range(DECODE_STEPS):
        tok = rt.next_token()
        assert tok == int(np.argmax(got[-1])), "the GPU's greedy token is not argmax of its own logits"
        seq.append(tok)
        rt.decode()
        got.append(rt.logits())
    assert rt.past == prompt_len + DECODE_STEPS
    ref = zoo.logits(spec, mode, seq, decoded_from=prompt_len if int8 else None)[prompt_len - 1 :]
    return [rel_err(g, r) for g, r in zip(got, ref, strict=True)]


@pytest.mark.parametrize("prompt_len", [7, 300])
@pytest.mark.parametrize("spec,mode,profile,tol", CASES)
def test_decode_logits_match_transformers(zoo, spec, mode, profile, tol, prompt_len):
    """16 decode steps, each fed the GPU's greedy token: logits at every step equal transformers' full
    forward over the same sequence (prompt_len 300 ends with the context window exactly full). The
    q4 modes on a float decode variant (so the tight tolerances hold); their int8 variants are the next
    test."""
    rt = zoo.runtime(spec, mode, profile, **options(spec))
    rt.use_decode_variant(next(n for n in rt.decode_variants if not n.startswith("q8")))
    errs = decode_errors(zoo, rt, spec, mode, prompt_len)
    record(mode, profile, max(errs))
    worst = int(np.argmax(errs))
    assert max(errs) <= tol, f"{spec.name} {mode}/{profile}: decode step {worst} error {errs[worst]:.2e} > {tol:.0e}"


INT8_CASES = [pytest.param(s, m, p, id=f"{s.name}-{m}-{p}") for s in SPECS for m, p, _ in PARTIAL
              if s.name in PARTIAL_SPECS and m.startswith("q4")]


@pytest.mark.parametrize("prompt_len", [7, 300])
@pytest.mark.parametrize("spec,mode,profile", INT8_CASES)
def test_decode_int8_logits_match_transformers(zoo, spec, mode, profile, prompt_len):
    """The q4 modes' default decode: gate_up, down, (after the first layer) qkv and the output head
    read int8 blocks written by the matmul before, and o stages attention's combined output so
    (lower.int8_edges);
    logits at every step equal transformers' with the same inputs rounded so
    (tiny_models.int8_decode_inputs), within TOL_INT8."""
    plan = json.loads((zoo.package(spec, mode, **options(spec)) / f"plan-{profile}.json").read_text())
    name, decode = next(iter(plan["decode_variants"].items()))
    assert name.startswith("q8")  # the int8 variants come first
    sources = [zoo.kernel_source(spec, mode, d["kernel"], **options(spec)) for d in decode]
    assert sum("const Q8_IN: bool = true;" in src for src in sources) == 3 * spec.num_hidden_layers  # + the head
    assert sum("const Q8_STAGED: bool = true;" in src for src in sources) == spec.num_hidden_layers  # o
    rt = zoo.runtime(spec, mode, profile, **options(spec))
    rt.use_decode_variant(next(n for n in rt.decode_variants if n.startswith("q8")))  # lavapipe's timing picks float
    errs = decode_errors(zoo, rt, spec, mode, prompt_len, int8=True)
    record(mode + "+int8", profile, max(errs))
    worst = int(np.argmax(errs))
    tol = TOL_INT8[profile]
    assert max(errs) <= tol, f"{spec.name} {mode}/{profile} int8: decode step {worst} error {errs[worst]:.2e} > {tol:.0e}"


# Decode attention at long context (kernels/wgsl/attention_splits.wgsl): a step's KV range is cut into
# at most `decode_splits` splits whose span grows with the context, each split walked in chunks of 64
# positions with an online softmax, and the o matmul combines the splits as it loads its input.
# Compiled with 2 splits, a 400-token prompt gives spans of 256 positions (4 chunks, the last split
# partial) over the 16 decode steps; the 200-token window gives spans of 128 that start off a multiple
# of 64. The specs cover attention_decode's layouts (GQA 2, 3 and 8; head_dim 128, 64 and 80: 16, 8 and
# 10 slots of 8 dims per row) and its fallback, attention.wgsl (head_dim 256 with GQA 8 needs more than
# 16 KiB of workgroup memory in attention_decode).
LONG_PROMPT = 400
LONG_SPECS = [
    BY_NAME["llama_hd128"],
    Spec("mistral_window200_gqa3", arch="mistral", hidden_size=96, intermediate_size=192, num_hidden_layers=2,
         num_attention_heads=6, num_key_value_heads=2, head_dim=64, vocab_size=301, sliding_window=200, seed=6),
    Spec("llama_gqa8_hd80", hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=1, head_dim=80, vocab_size=301, seed=7),
    Spec("llama_gqa8_hd256", hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=8,
         num_key_value_heads=1, head_dim=256, vocab_size=301, seed=8),
]


@pytest.mark.parametrize("mode,profile,tol", FULL, ids=[f"{m}-{p}" for m, p, _ in FULL])
@pytest.mark.parametrize("spec", LONG_SPECS, ids=str)
def test_long_context_decode_matches_transformers(zoo, spec, mode, profile, tol):
    """Decode after 400 tokens over splits of several chunks each (and a sliding window that cuts the
    range), in both profiles: logits at every step equal transformers'."""
    opts = {"prefill_chunk": 64, "context_window": LONG_PROMPT + DECODE_STEPS, "decode_splits": 2}
    plan = json.loads((zoo.package(spec, mode, **opts) / f"plan-{profile}.json").read_text())
    kernels = {d["kernel"].rsplit("_", 1)[0] for d in next(iter(plan["decode_variants"].values()))}
    assert ("attention" if spec.head_dim == 256 else "attention_decode") in kernels
    rt = zoo.runtime(spec, mode, profile, **opts)
    errs = decode_errors(zoo, rt, spec, mode, LONG_PROMPT)
    record(mode, profile, max(errs))
    worst = int(np.argmax(errs))
    assert max(errs) <= tol, f"{spec.name} {mode}/{profile}: decode step {worst} error {errs[worst]:.2e} > {tol:.0e}"


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_prefill_continues_a_cache(zoo, spec):
    """A prefill appended to a non-empty cache (a second chat turn: 7 tokens, then 293 more, so no chunk
    is aligned to the cache start) gives the same logits as one 300-token prefill."""
    rt = zoo.runtime(spec, "q0f32", "f32", **options(spec))
    ids = prompt_ids(spec)
    rt.prefill(ids[:7])
    rt.prefill(ids[7:])
    err = rel_err(rt.logits(), zoo.logits(spec, "q0f32", ids)[-1])
    assert err <= TOL_F32, f"{spec.name}: error {err:.2e} > {TOL_F32:.0e}"


def hf_generate(model, prompt: list[int], n: int) -> list[int]:
    """transformers' greedy continuation (do_sample=False) of `prompt`, n tokens (no eos: see tiny_models)."""
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=n, do_sample=False)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_greedy_generation_equals_transformers(zoo, spec):
    """Model.generate (pipelined GPU greedy decoding) yields exactly transformers' generate(do_sample=False)
    for 32 tokens. q0f32 only: its error (<= ~1e-5 x max|logits|) stays below the top-1/top-2 logit gaps
    along these continuations, so any difference is a bug, not a near tie."""
    rt = zoo.runtime(spec, "q0f32", "f32", **options(spec))
    prompt = [int(i) for i in prompt_ids(spec)[:20]]
    assert list(rt.generate(prompt, 32)) == hf_generate(zoo.hf(spec), prompt, 32)


# The compiler gives each decode attention workgroup one query head at head_dim 128, else two of the
# heads sharing a KV head where they pair up, else one (kernels.attention_decode_heads), so several
# workgroups share a KV head; the specs above run those. `decode_heads` sets other counts: two heads
# of head_dim 128 (every V thread on both, two reduction passes), and all 3 or 8 heads of a KV head in
# one workgroup, whose V threads sum several heads each and end the split in a pass per head (8 heads
# of head_dim 80: one half of partial dots, a second barrier a chunk).
@pytest.mark.parametrize("mode,profile,tol", FULL, ids=[f"{m}-{p}" for m, p, _ in FULL])
@pytest.mark.parametrize("spec,heads", [(LONG_SPECS[0], 2), (LONG_SPECS[1], 3), (LONG_SPECS[2], 8)],
                         ids=lambda v: str(v))
def test_decode_attention_with_other_heads_per_workgroup(zoo, spec, heads, mode, profile, tol):
    opts = {"prefill_chunk": 64, "context_window": LONG_PROMPT + DECODE_STEPS, "decode_splits": 2, "decode_heads": heads}
    plan = json.loads((zoo.package(spec, mode, **opts) / f"plan-{profile}.json").read_text())
    attn = [d for d in next(iter(plan["decode_variants"].values())) if d["kernel"].startswith("attention_decode")]
    assert attn and attn[0]["workgroups"][0] == spec.num_attention_heads // heads
    errs = decode_errors(zoo, zoo.runtime(spec, mode, profile, **opts), spec, mode, LONG_PROMPT)
    record(mode, profile, max(errs))
    assert max(errs) <= tol, f"{spec.name} {mode}/{profile}, {heads} heads a workgroup: error {max(errs):.2e} > {tol:.0e}"


@pytest.mark.parametrize("spec", [BY_NAME["llama_mha"], BY_NAME["mistral_window16"]], ids=str)
def test_generation_stops_at_the_context_window_and_stop_ids(zoo, spec):
    """generate() yields only what fits (the last token needs no KV slot, so capacity - past - prompt + 1
    tokens) and ends the cache exactly full; with stop_ids it ends at the first stop token, inclusive."""
    rt = zoo.runtime(spec, "q0f32", "f32", **options(spec))
    prompt = [int(i) for i in prompt_ids(spec, CONTEXT - 5)]
    got = list(rt.generate(prompt, 32))
    assert len(got) == 6 and rt.past == CONTEXT
    assert got == hf_generate(zoo.hf(spec), prompt, 6)

    rt.reset()
    full = list(rt.generate(prompt[:20], 32))
    stop = full[5]
    first = full.index(stop)
    rt.reset()
    assert list(rt.generate(prompt[:20], 32, stop_ids=[stop])) == full[: first + 1]
    assert rt.past == 20 + first  # the stop token ends the turn unfed: the next turn's prompt carries it


@pytest.mark.parametrize("end", ["closed", "stop", "max_tokens", "first_token", "stop_first"])
def test_generation_leaves_the_state_of_an_unpipelined_run(zoo, end):
    """generate() keeps two decode steps in flight beyond the token it reads; however it ends, the steps
    past the last one an unpipelined generation (step t + 1 submitted just before token t is yielded)
    would have run are rolled back and that step is run again: the KV length, the logits and the
    sampled token then equal those of prefill + decode() step by step. Ends: the caller closes after 5
    tokens (6 steps); a stop id (token 4's, or an earlier equal one: as many steps as tokens);
    max_new_tokens 7 (7 steps); closed after the first token (the replayed step is the second: a decode);
    the first token a stop id (the replayed step is the prefill's last chunk)."""
    spec = BY_NAME["llama_mha"]
    rt = zoo.runtime(spec, "q0f32", "f32", **options(spec))
    prompt = [int(i) for i in prompt_ids(spec)[:20]]
    full = list(rt.generate(prompt, 12))
    rt.reset()
    gen = rt.generate(prompt, 7, stop_ids={"stop": [full[4]], "stop_first": [full[0]]}.get(end, []))
    keep_after = {"closed": 5, "stop": 5, "max_tokens": 7, "first_token": 1, "stop_first": 1}[end]
    got = [t for _, t in zip(range(keep_after), gen, strict=False)]
    gen.close()
    steps = {"closed": 6, "stop": full.index(full[4]) + 1, "max_tokens": 7, "first_token": 2, "stop_first": 1}[end]
    assert got == full[: len(got)]
    past, logits, token = rt.past, rt.logits(), rt.next_token()
    rt.reset()
    rt.prefill(prompt)
    for _ in range(steps - 1):
        rt.decode()
    assert (past, token) == (rt.past, rt.next_token()) == (len(prompt) + steps - 1, full[steps - 1])
    assert np.array_equal(logits, rt.logits())


def _package_matrix(pkg, name: str, mode: str, shape: tuple[int, int]) -> np.ndarray:
    """Dequantize package tensor `name` (stored in `mode`'s format) back to float32 [N, K]."""
    if mode.startswith("q4"):
        sd = "f16" if mode == "q4f16_1" else "f32"
        p = PackedWeight("q4s", shape, {"qweight": read_tensor(pkg, f"{name}.qweight").view(np.uint32),
                                        "scales": read_tensor(pkg, f"{name}.scales").view(np.uint32)}, sd)
    else:
        p = PackedWeight(mode[2:], shape, {"weight": read_tensor(pkg, f"{name}.weight").view(np.uint32)})
    return dequantize(p)


@pytest.mark.parametrize("mode", ["q0f32", "q0f16", "q4f16_1", "q4f32_1"])
@pytest.mark.parametrize("spec", [BY_NAME["llama_bias"], BY_NAME["qwen2"]], ids=str)
def test_reference_weights_are_the_package_weights(zoo, spec, mode):
    """The dequantized reference (each HF matrix quantized alone) holds bit-for-bit the values the package
    stores for its fused [Wq; Wk; Wv] and [Wg; Wu] matrices, embedding and lm_head: group quantization
    works per row, so fusing before quantizing changes nothing. Biases and norms are kept in f32."""
    hf = zoo.hf(spec, mode)
    sd = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    pkg = zoo.package(spec, mode, **options(spec))

    order = rope_pair_order(normalize_hf_config(json.loads((zoo.checkpoint(spec) / "config.json").read_text())))

    def check(name, *hf_names):
        want = np.concatenate([sd[n] for n in hf_names])
        if name.endswith(".qkv"):  # the package keeps qkv rows in rope pairs (see rope_pair_order)
            want = want[order]
        np.testing.assert_array_equal(_package_matrix(pkg, name, mode, want.shape), want, err_msg=name)

    check("embed", "model.embed_tokens.weight")
    if not spec.tie_word_embeddings:
        check("lm_head", "lm_head.weight")
    for i in range(spec.num_hidden_layers):
        a, m = f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
        check(f"layers.{i}.qkv", *(a + f"{x}_proj.weight" for x in "qkv"))
        check(f"layers.{i}.o", a + "o_proj.weight")
        check(f"layers.{i}.gate_up", m + "gate_proj.weight", m + "up_proj.weight")
        check(f"layers.{i}.down", m + "down_proj.weight")
        bias = np.concatenate([sd[a + f"{x}_proj.bias"] for x in "qkv"])[order]
        np.testing.assert_array_equal(read_tensor(pkg, f"layers.{i}.qkv.bias").view(np.float32), bias)
        norm = sd[f"model.layers.{i}.input_layernorm.weight"]
        np.testing.assert_array_equal(read_tensor(pkg, f"layers.{i}.input_norm").view(np.float32), norm)


@pytest.mark.parametrize("variant", ["sharded", "bfloat16", "float16"])
def test_checkpoint_variants_import_exactly(zoo, tmp_path, variant):
    """Sharded safetensors (with an index) and bf16/f16 checkpoints, as real models ship, give the package
    transformers' own weights converted to f32 exactly (q0f32 stores them as is)."""
    spec = BY_NAME["qwen2"]  # biases too
    hf = zoo.hf(spec)
    ckpt = tmp_path / variant
    if variant == "sharded":
        hf.save_pretrained(ckpt, max_shard_size="100KB")
        assert len(list(ckpt.glob("*.safetensors"))) > 2
        want = hf
    else:
        want = copy.deepcopy(hf).to(getattr(torch, variant))
        want.save_pretrained(ckpt)
    (ckpt / "tokenizer.json").write_bytes((zoo.checkpoint(spec) / "tokenizer.json").read_bytes())
    pkg = compile_model(ckpt, tmp_path / "pkg", CompileOptions(quantization="q0f32", context_window=64,
                                                               progress=False))
    sd = {k: v.detach().float().numpy() for k, v in want.state_dict().items()}
    for name, parts in [("embed.weight", ["model.embed_tokens.weight"]), ("lm_head.weight", ["lm_head.weight"]),
                        ("layers.1.qkv.weight", [f"model.layers.1.self_attn.{x}_proj.weight" for x in "qkv"]),
                        ("layers.1.qkv.bias", [f"model.layers.1.self_attn.{x}_proj.bias" for x in "qkv"]),
                        ("layers.1.down.weight", ["model.layers.1.mlp.down_proj.weight"]),
                        ("final_norm", ["model.norm.weight"])]:
        expect = np.concatenate([sd[p] for p in parts])
        if name.startswith("layers.1.qkv"):  # rows in rope pairs (see rope_pair_order)
            expect = expect[rope_pair_order(normalize_hf_config(json.loads((ckpt / "config.json").read_text())))]
        np.testing.assert_array_equal(read_tensor(pkg, name).view(np.float32), expect.reshape(-1), err_msg=name)


def test_transformers_v4_rope_scaling_config(zoo, tmp_path):
    """Hub checkpoints of Llama 3.x carry transformers-v4 fields (`rope_theta`, `rope_scaling` with
    "rope_type": "llama3") where v5 writes `rope_parameters`: both compile to the same rope table, the
    one the logits tests above validate against transformers."""
    spec = BY_NAME["llama3_gqa4_tied"]
    v5 = tmp_path / "v5"
    shutil.copytree(zoo.checkpoint(spec), v5)
    v4 = tmp_path / "v4"
    shutil.copytree(v5, v4)
    cfg = json.loads((v4 / "config.json").read_text())
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = rope
    (v4 / "config.json").write_text(json.dumps(cfg))
    opts = CompileOptions(quantization="q0f32", context_window=CONTEXT, progress=False)
    a, b = compile_model(v5, tmp_path / "p5", opts), compile_model(v4, tmp_path / "p4", opts)
    assert json.loads((a / "manifest.json").read_text())["config"] == json.loads((b / "manifest.json").read_text())["config"]
    np.testing.assert_array_equal(read_tensor(a, "rope_table"), read_tensor(b, "rope_table"))


def test_kv_splits_choices_match_transformers(zoo, tmp_path):
    """The step's uniform may ask decode attention for fewer splits than its kernels were compiled for
    (the plan's `decode_splits` choices, timed at first load): every choice gives transformers' logits
    after 400 tokens (1 split of 448 positions, 2 of 256, 4 of 128), a count the plan doesn't offer is
    refused, and the load-time choice is one of them, cached per adapter, package and decode variant."""
    from webllm.errors import WebLLMError
    from webllm.runtime import Model
    from webllm.runtime.model import workgroups

    spec = BY_NAME["llama_hd128"]
    opts = {"prefill_chunk": 64, "context_window": LONG_PROMPT + DECODE_STEPS, "decode_splits": 4}
    pkg = tmp_path / "pkg"
    shutil.copytree(zoo.package(spec, "q0f32", **opts), pkg)
    plan_path = pkg / "plan-f32.json"
    plan = json.loads(plan_path.read_text())
    assert plan["decode_splits"] == {"default": 4, "choices": [4]}  # a --decode-splits count is pinned
    plan["decode_splits"]["choices"] = [1, 2, 4]
    plan_path.write_text(json.dumps(plan))
    load = dict(profile="f32", progress=False, adapter=zoo.adapter, device=zoo.device)
    for n in (1, 2, 4):
        rt = Model.load(pkg, kv_splits=n, **load)
        assert rt.kv_splits == n and rt._uniform["kv_splits"] == n
        rt.set_sampling(temperature=0.5)  # sampling fields return to defaults; the split count stays
        assert rt._uniform["kv_splits"] == n
        rt.set_sampling()
        attn = next(d for d in rt._dispatch["decode"] if d[7] is not None)  # the dispatch with max_z
        assert workgroups(attn, 1, LONG_PROMPT, n)[2] == n  # the grid follows: no idle split workgroups
        errs = decode_errors(zoo, rt, spec, "q0f32", LONG_PROMPT)
        assert max(errs) <= TOL_F32, f"kv_splits {n}: error {max(errs):.2e} > {TOL_F32:.0e}"
    with pytest.raises(WebLLMError, match="kv_splits 3: this package offers 1, 2, 4"):
        Model.load(pkg, kv_splits=3, **load)
    rt = Model.load(pkg, **load)
    assert rt.kv_splits in (1, 2, 4)
    cache = json.loads((Path(os.environ["WEBLLM_CACHE"]) / "tuning.json").read_text())
    assert [v for k, v in cache.items() if "|splits." in k] == [str(rt.kv_splits)]
