"""GGUF tokenizers -> Hugging Face `tokenizers` tokenizer.json, splitting text as llama.cpp does.

A GGUF holds the vocabulary, merges or scores, token types and a pre-tokenizer name; we rebuild a
tokenizer.json whose pre-tokenizer applies llama.cpp's split expressions (src/llama-vocab.cpp), so
both runtimes give llama.cpp's token ids. `g` below is the importer's parsed GGUF (metadata by key).
"""

from __future__ import annotations

from typing import Any

from webllm.errors import InputError, UnsupportedModelError

# llama.cpp's pre-tokenizer splits (src/llama-vocab.cpp), by tokenizer.ggml.pre. llama.cpp applies
# the expressions in turn, each splitting every piece the previous one left, and keeps the text
# between matches as pieces too: exactly a sequence of `Split(behavior="isolated")`.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_LLAMA3 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN35 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# DeepSeek's classes, as llama.cpp spells them (escaped: some letters have look-alike code points).
_CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
_DEEPSEEK_LETTERS = r"\s?[A-Za-z" + (
    "\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373"
    "\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481"
    "\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf"
    "\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d"
    "\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4"
    "\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d"
    "\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17"
    "\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb"
    "\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+"
)
_DEEPSEEK_PUNCT = r"\s?[!-/:-~" + "\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"
# Tekken and GPT-4o: the expressions of the models' own tokenizer.json (Oniguruma, which HF
# tokenizers uses, has the \p{Lu}... classes that llama.cpp has to emulate). Contractions are
# spelled without (?i:...) everywhere, so JavaScript's RegExp can run the same expressions.
_UPPER, _LOWER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_TEKKEN = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+{_CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*{_CONTRACTIONS}?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# name -> (split expressions, ignore_merges, add_bos by default); aliases as llama.cpp groups them.
_PRE: dict[str, tuple[list[str], bool, bool]] = {}
for _names, _spec in (
    (("default",), ([r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"], False, False)),
    (("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"),
     ([_LLAMA3], True, True)),
    (("dbrx", "smaug-bpe"), ([_LLAMA3], False, False)),
    (("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open"),
     ([_QWEN2], False, False)),
    (("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
      "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais", "trillion",
      "granite-docling", "exaone4"), ([_GPT2], False, False)),
    (("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"),
     ([r"\p{N}", _GPT2], False, False)),
    (("falcon",), ([r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]"], False, False)),
    (("qwen35",), ([_QWEN35], False, False)),
    (("chatglm-bpe",), ([_LLAMA3], False, False)),
    (("deepseek-coder",), ([r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"], False, False)),
    (("deepseek-llm",), ([r"[\r\n]", _DEEPSEEK_LETTERS, _DEEPSEEK_PUNCT, r"\s+$", _CJK, r"\p{N}+"], False, False)),
    (("tekken",), ([_TEKKEN], True, True)),
    (("gpt-4o", "llama4", "kanana2", "talkie"), ([_GPT4O], False, False)),
):
    for _name in _names:
        _PRE[_name] = _spec

# GGUF token types (gguf.TokenType) that llama.cpp matches whole in the text.
_UNKNOWN, _CONTROL, _USER_DEFINED = 2, 3, 4


def build_tokenizer(g) -> tuple[str, dict[str, Any]]:
    """tokenizer.json text and tokenizer_config for the vocabulary this file describes."""
    model = g.get("tokenizer.ggml.model")
    tokens: list[str] = list(g.get("tokenizer.ggml.tokens", []))
    if not tokens:
        raise InputError(f"{g.src}: the file has no tokenizer (metadata 'tokenizer.ggml.tokens' is missing)")
    # llama.cpp renames empty tokens the same way, and refuses a vocabulary that lists a text twice.
    tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
    if len(set(tokens)) != len(tokens):
        raise InputError(f"{g.src}: the vocabulary lists the same token text twice")
    types = list(g.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    scores = list(g.get("tokenizer.ggml.scores", [0.0] * len(tokens)))
    if len(types) < len(tokens) or len(scores) < len(tokens):
        raise InputError(f"{g.src}: tokenizer.ggml.token_type or .scores is shorter than the vocabulary")
    special_keys = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "pad": "padding_token_id"}
    special = {name: g.get(f"tokenizer.ggml.{key}") for name, key in special_keys.items()}

    if model == "gpt2":
        pre = g.get("tokenizer.ggml.pre") or "default"
        if pre not in _PRE:
            raise UnsupportedModelError(
                f"{g.src}: GGUF pre-tokenizer {pre!r} is not supported (supported: {', '.join(sorted(_PRE))})"
            )
        merges = list(g.get("tokenizer.ggml.merges", []))
        if not merges:
            raise InputError(f"{g.src}: byte-level BPE tokenizer without 'tokenizer.ggml.merges'")
        splits, ignore_merges, add_bos = _PRE[pre]
        tok = _byte_level_bpe(tokens, merges, splits, ignore_merges)
        add_eos = False
    elif model == "llama":
        # llama.cpp's defaults for SentencePiece vocabularies that do not name their specials.
        special = {"bos": 1, "eos": 2, "unk": 0} | {k: v for k, v in special.items() if v is not None}
        tok = _sentencepiece_bpe(tokens, scores, int(special["unk"]), bool(g.get("tokenizer.ggml.add_space_prefix", True)))
        add_bos, add_eos = True, False
    else:
        raise UnsupportedModelError(
            f"{g.src}: GGUF tokenizer model {model!r} is not supported (supported: 'gpt2' byte-level BPE, "
            "'llama' SentencePiece)"
        )
    add_bos = bool(g.get("tokenizer.ggml.add_bos_token", add_bos))
    add_eos = bool(g.get("tokenizer.ggml.add_eos_token", add_eos))

    _add_special_tokens(tok, tokens, types)
    special = {k: int(v) for k, v in special.items() if v is not None and 0 <= int(v) < len(tokens)}
    _set_post_processor(tok, tokens, special, add_bos, add_eos, g.src)

    tokenizer_config: dict[str, Any] = {"add_bos_token": add_bos, "add_eos_token": add_eos}
    for name, token_id in special.items():
        tokenizer_config[f"{name}_token"] = tokens[token_id]
    if g.get("tokenizer.chat_template") is not None:
        tokenizer_config["chat_template"] = g.get("tokenizer.chat_template")
    return tok.to_str(), tokenizer_config


def _byte_level_bpe(tokens: list[str], merges: list[str], splits: list[str], ignore_merges: bool) -> Any:
    """GPT-2 style BPE: the vocabulary is already spelled in the byte-to-unicode alphabet."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = []
    for m in merges:
        # llama.cpp splits at the first space after the first character (a token may start with one).
        pos = m.find(" ", 1)
        if pos > 0:
            pairs.append((m[:pos], m[pos + 1 :]))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in splits]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece_bpe(tokens: list[str], scores: list[float], unk_id: int, add_space_prefix: bool) -> Any:
    """SentencePiece BPE as llama.cpp runs it: spaces become '▁', a '▁' is prepended to each stretch
    of text, pieces merge best score first, and characters outside the vocabulary fall back to
    <0xXX> byte tokens.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers

    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(
        vocab=vocab, merges=_merges_from_scores(tokens, scores, vocab),
        unk_token=tokens[unk_id] if 0 <= unk_id < len(tokens) else None, fuse_unk=True, byte_fallback=True,
    ))
    # Normalizers run on each stretch of text between special tokens, as llama.cpp's prefix does.
    steps = [normalizers.Prepend("▁")] if add_space_prefix else []
    tok.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([decoders.Strip(" ", 1, 0)] if add_space_prefix else [])
    )
    return tok


def _merges_from_scores(tokens: list[str], scores: list[float], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges equivalent to llama.cpp's SentencePiece loop.

    llama.cpp repeatedly joins the adjacent pair whose concatenation is the vocabulary token with
    the highest score. As BPE merges: every split of a token into two vocabulary tokens, ranked by
    the joined token's score (best first).
    """
    ranked = []
    for i, t in enumerate(tokens):
        for k in range(1, len(t)):
            left, right = t[:k], t[k:]
            if left in vocab and right in vocab:
                ranked.append((-scores[i], i, k, left, right))
    ranked.sort(key=lambda r: r[:3])
    return [(left, right) for *_, left, right in ranked]


def _add_special_tokens(tok: Any, tokens: list[str], types: list[int]) -> None:
    """Control and unknown tokens become special added tokens, user-defined ones plain added tokens.

    llama.cpp matches all three whole in the raw text before splitting it (user-defined ones even
    when not parsing specials), which is what added tokens do; llama.cpp's detokenizer drops control
    tokens but prints user-defined ones ("<think>"), hence special=False for those.
    """
    from tokenizers import AddedToken

    added = [
        AddedToken(t, special=ty != _USER_DEFINED, normalized=False)
        for t, ty in zip(tokens, types[: len(tokens)], strict=True) if ty in (_CONTROL, _UNKNOWN, _USER_DEFINED)
    ]
    if added:
        tok.add_tokens(added)  # ids come from the model's vocabulary, where each token already is


def _set_post_processor(tok: Any, tokens: list[str], special: dict[str, int], add_bos: bool, add_eos: bool,
                        src: str) -> None:
    """BOS / EOS around each sequence, as tokenizer.ggml.add_bos_token / add_eos_token ask."""
    from tokenizers import processors

    before, after = [], []
    for flag, name, side in ((add_bos, "bos", before), (add_eos, "eos", after)):
        if flag:
            if name not in special:
                raise InputError(f"{src}: the tokenizer adds a {name.upper()} token but the file names none")
            side.append(tokens[special[name]])
    used = [(tokens[special[n]], special[n]) for n, flag in (("bos", add_bos), ("eos", add_eos)) if flag]
    tok.post_processor = processors.TemplateProcessing(
        single=[*before, "$A", *after], pair=[*before, "$A", *after, *before, "$B:1", *after], special_tokens=used
    )
