"""Structured output: a grammar (JSON, or a JSON schema) that every generated token must follow.

xgrammar compiles the grammar against the package's vocabulary; per step, the CPU advances the
matcher with the sampled token and fills a token bitmask (bit v of word v / 32 set: token v allowed),
which the runtime uploads for the GPU sampler to apply. The decode therefore waits for each token
when a grammar is in use.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np

from webllm.engine.tokenizer import Tokenizer
from webllm.errors import InvalidParameterError, WebLLMError


class GrammarCompiler:
    """Compiles grammars for one tokenizer, caching the most recent few (a server sees the same
    schema again and again)."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int):
        try:
            import xgrammar as xgr
        except ImportError as e:  # pragma: no cover - a dependency
            raise WebLLMError(f"structured output needs the xgrammar package ({e})") from None
        self._xgr = xgr
        backend = tokenizer.backend
        encoded = [""] * vocab_size
        for token, i in backend.get_vocab(with_added_tokens=True).items():
            if i < vocab_size:
                encoded[i] = token
        meta = xgr.TokenizerInfo._detect_metadata_from_hf(backend.to_str())
        info = xgr.TokenizerInfo(encoded, vocab_type=meta["vocab_type"], vocab_size=vocab_size,
                                 stop_token_ids=list(tokenizer.eos_token_ids) or None,
                                 add_prefix_space=meta["add_prefix_space"])
        self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        self._cache: OrderedDict[str, object] = OrderedDict()
        self.vocab_size = vocab_size

    def compile(self, response_format: dict) -> Grammar:
        """`response_format`: {"type": "json_object"} or {"type": "json_schema", "schema": {...}}."""
        key = json.dumps(response_format, sort_keys=True)
        compiled = self._cache.get(key)
        if compiled is None:
            try:
                if response_format["type"] == "json_object":
                    compiled = self._compiler.compile_builtin_json_grammar()
                else:
                    compiled = self._compiler.compile_json_schema(json.dumps(response_format["schema"]),
                                                                  any_whitespace=False)
            except Exception as e:  # xgrammar raises RuntimeError / ValueError for schemas it cannot use
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise InvalidParameterError(f"'response_format': cannot use this JSON schema ({first})",
                                            param="response_format") from None
            self._cache[key] = compiled
            while len(self._cache) > 16:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return Grammar(self._xgr.GrammarMatcher(compiled), self.vocab_size)


class Grammar:
    """One request's position in its grammar."""

    def __init__(self, matcher, vocab_size: int):
        self._m = matcher
        self.mask = np.zeros((1, (vocab_size + 31) // 32), dtype=np.int32)

    def next_mask(self) -> np.ndarray:
        """The allowed tokens of the next step, as u32 words [ceil(vocab / 32)]."""
        self._m.fill_next_token_bitmask(self.mask)
        return self.mask[0].view(np.uint32)

    def accept(self, token: int) -> bool:
        """Advance by the sampled token; False if the grammar forbids it (a runtime bug)."""
        return bool(self._m.accept_token(int(token)))

    @property
    def finished(self) -> bool:
        """The grammar is complete (it allows only the end of the text now)."""
        return bool(self._m.is_terminated())
