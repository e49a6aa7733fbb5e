"""Tokenizer: the package's tokenizer.json through Hugging Face `tokenizers`, with streaming decode."""

from __future__ import annotations

from pathlib import Path

from webllm.errors import PackageError


class Tokenizer:
    def __init__(self, path: str | Path, meta: dict):
        from tokenizers import Tokenizer as HFTokenizer

        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception for malformed files
            raise PackageError(f"{path}: cannot load tokenizer ({str(e).splitlines()[0]})") from None
        self.bos_token_id = meta.get("bos_token_id")
        self.eos_token_ids = list(meta.get("eos_token_ids", []))
        self.bos_token = meta.get("bos_token")
        self.eos_token = meta.get("eos_token")

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`. Chat prompts come rendered with their special tokens as text, so by default
        no BOS is added here (templates that want one write it)."""
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_text(self, token_id: int) -> str:
        """One token's own text, special tokens included (what logprobs report)."""
        return self._tok.decode([token_id], skip_special_tokens=False)

    @property
    def backend(self):
        """The `tokenizers.Tokenizer` underneath (for grammar compilation)."""
        return self._tok


class IncrementalDecoder:
    """Turns a growing list of ids into text pieces, decoding only a short window per token (not the
    whole reply) and holding back incomplete UTF-8 sequences.

    The window starts `prefix` ids before the newest unreleased text, so that tokenizers whose decode
    depends on the left neighbour (a leading space dropped at the start of a text) release what they
    would release for the whole sequence. `context` (the prompt's last ids) primes the first window."""

    def __init__(self, tok: Tokenizer, context: list[int] | tuple[int, ...] = ()):
        self.tok = tok
        self.ids: list[int] = list(context)[-4:]
        self.prefix_offset = 0  # window start
        self.read_offset = len(self.ids)  # ids before this are released

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix = self.tok.decode(self.ids[self.prefix_offset : self.read_offset])
        text = self.tok.decode(self.ids[self.prefix_offset :])
        if len(text) <= len(prefix) or text.endswith("\ufffd"):  # nothing new, or a character not complete yet
            return ""
        piece = text[len(prefix):]
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        if self.prefix_offset > 64:  # keep the list short; offsets are relative to it
            drop = self.prefix_offset
            del self.ids[:drop]
            self.prefix_offset -= drop
            self.read_offset -= drop
        return piece
