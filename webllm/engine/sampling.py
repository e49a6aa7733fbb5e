"""How the next token is picked: the parameters of one request, checked once, in the engine's terms.

The rule itself runs on the GPU (the plan's `sample` kernel); docs/FORMAT.md ("Sampling") states it
exactly, for both runtimes. This module only carries and checks the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from webllm.errors import InvalidParameterError

# OpenAI's defaults, used when neither the caller nor the package's generation config says otherwise.
OPENAI_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
# The terminal tools' defaults: greedy, deterministic.
GREEDY_DEFAULTS = dict(OPENAI_DEFAULTS, temperature=0.0)


@dataclass(frozen=True)
class SamplingParams:
    """temperature <= 0 is greedy (argmax). top_k 0: no limit. seed None: a random one per request.
    top_logprobs None: no logprobs; k >= 0: the chosen token's logprob and the k likeliest."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    top_logprobs: int | None = None

    def check(self, vocab_size: int) -> SamplingParams:
        def bad(param: str, why: str):
            raise InvalidParameterError(f"'{param}': {why}", param=param)

        if not self.temperature >= 0:
            bad("temperature", f"must be >= 0 (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            bad("top_p", f"must lie in (0, 1] (got {self.top_p})")
        if self.top_k < -1:
            bad("top_k", f"must be >= 0 (0 or -1: no limit; got {self.top_k})")
        if not 0 <= self.min_p <= 1:
            bad("min_p", f"must lie in [0, 1] (got {self.min_p})")
        if not self.repetition_penalty > 0:
            bad("repetition_penalty", f"must be > 0 (got {self.repetition_penalty})")
        for tok in self.logit_bias:
            if not 0 <= tok < vocab_size:
                bad("logit_bias", f"token id {tok} is outside the vocabulary [0, {vocab_size})")
        if self.top_logprobs is not None and not 0 <= self.top_logprobs <= 20:
            bad("top_logprobs", f"must lie in [0, 20] (got {self.top_logprobs})")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    @property
    def uses_penalties(self) -> bool:
        return self.frequency_penalty != 0 or self.presence_penalty != 0 or self.repetition_penalty != 1

    def with_seed(self, seed: int | None) -> SamplingParams:
        return replace(self, seed=seed)
