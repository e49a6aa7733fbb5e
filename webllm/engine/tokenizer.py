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


class StreamDecoder:
    """Turns a growing list of ids into text pieces, holding back incomplete UTF-8 sequences."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self.ids: list[int] = []
        self.sent = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):  # a multi-byte character is not complete yet
            return ""
        piece = text[len(self.sent):] if text.startswith(self.sent) else ""
        self.sent = text
        return piece
