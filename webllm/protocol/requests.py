"""Request bodies of the OpenAI API, validated into named errors.

`ChatCompletionRequest.parse(body)` and `CompletionRequest.parse(body)` take the JSON object (or the
keyword arguments of `engine.chat.completions.create`) and return a validated request, or raise:
`ParameterTypeError` (a field of the wrong type, a required one missing), `InvalidParameterError`
(a value out of range), `UnsupportedParameterError` (a field this engine does not implement, or does
not know: never silently ignored). Extensions beyond OpenAI's fields: `top_k`, `min_p`,
`repetition_penalty`, `truncation` ("auto": drop the oldest turns when the chat outgrows the window).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webllm.errors import InvalidParameterError, ParameterTypeError, UnsupportedParameterError

MAX_STOP = 4
MAX_TOP_LOGPROBS = 20
MAX_N = 16

# Fields accepted and ignored because they change nothing here (bookkeeping on OpenAI's side).
IGNORED = {"user", "metadata", "store", "service_tier", "parallel_tool_calls"}
# Fields of the OpenAI API that this engine does not implement.
UNSUPPORTED = {"tools", "tool_choice", "functions", "function_call", "audio", "modalities", "prediction",
               "web_search_options", "reasoning_effort", "suffix", "best_of", "verbosity", "prompt_cache_key",
               "safety_identifier"}

# pydantic error types that mean "a value out of range" (400) rather than "the wrong type" (422)
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "too_long",
                 "literal_error", "string_too_short", "value_error"}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    model_config = ConfigDict(strict=True, extra="ignore")  # name, tool_call_id... carry nothing we use
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class JSONSchemaFormat(_Strict):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(_Strict):
    model_config = ConfigDict(strict=True, extra="ignore")
    include_usage: bool = False


class _Sampling(_Strict):
    """The fields both endpoints share. None means: the package's generation default, else OpenAI's."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)  # extension; 0 or -1: no limit
    min_p: float | None = Field(None, ge=0, le=1)  # extension
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    repetition_penalty: float | None = Field(None, gt=0, le=10)  # extension (multiplicative, as HF/vLLM)
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    truncation: Literal["auto", "disabled"] = "disabled"  # extension (as the Responses API's)

    @classmethod
    def parse(cls, body: Any):
        if not isinstance(body, dict):
            raise ParameterTypeError("the request body must be a JSON object")
        extra = [k for k in body if k not in cls.model_fields and k not in _aliases(cls)]
        for k in extra:
            if k in UNSUPPORTED or k not in IGNORED:
                what = "is not supported by webllm" if k in UNSUPPORTED else "is not a known parameter"
                if body[k] is None or (k == "best_of" and body[k] in (1,)):
                    continue  # an explicit null (or the default) asks for nothing
                raise UnsupportedParameterError(f"'{k}' {what}", param=k)
        try:
            req = cls.model_validate({k: v for k, v in body.items() if k not in extra})
        except ValidationError as e:
            err = e.errors()[0]
            param = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("str", "list", "dict", "function")))
            msg = f"'{param}': {err['msg']}" if param else err["msg"]
            if err["type"] in _RANGE_ERRORS:
                raise InvalidParameterError(msg, param=param or None) from None
            raise ParameterTypeError(msg, param=param or None) from None
        req._check()
        return req

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def bias(self) -> dict[int, float]:
        return {int(k): float(v) for k, v in (self.logit_bias or {}).items()}

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def _check(self) -> None:
        stops = self.stops
        if len(stops) > MAX_STOP:
            raise InvalidParameterError(f"'stop': at most {MAX_STOP} strings (got {len(stops)})", param="stop")
        if any(s == "" for s in stops):
            raise InvalidParameterError("'stop': empty strings cannot be matched", param="stop")
        for k, v in (self.logit_bias or {}).items():
            if not k.isdigit():
                raise InvalidParameterError(f"'logit_bias': keys are token ids (got {k!r})", param="logit_bias")
            if not -100 <= v <= 100:
                raise InvalidParameterError(f"'logit_bias': values lie in [-100, 100] (got {v})", param="logit_bias")
        if self.stream_options is not None and not self.stream:
            raise InvalidParameterError("'stream_options' is only allowed with stream=true", param="stream_options")


def _aliases(cls) -> set[str]:
    return {f.alias for f in cls.model_fields.values() if f.alias}


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None

    @property
    def limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def n_top_logprobs(self) -> int | None:
        """None: no logprobs; else how many alternatives per token."""
        return (self.top_logprobs or 0) if self.logprobs else None

    def _check(self) -> None:
        super()._check()
        if self.top_logprobs and not self.logprobs:
            raise InvalidParameterError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
        rf = self.response_format
        if rf is not None and rf.type == "json_schema" and (rf.json_schema is None or not rf.json_schema.schema_):
            raise InvalidParameterError("'response_format': json_schema needs {\"json_schema\": {\"schema\": {...}}}",
                                        param="response_format")

    def message_dicts(self) -> list[dict]:
        """The conversation as the chat template takes it ("developer" is the newer name of "system")."""
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] = Field(...)
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False

    @property
    def limit(self) -> int | None:
        return self.max_tokens

    @property
    def n_top_logprobs(self) -> int | None:
        return self.logprobs

    def _check(self) -> None:
        super()._check()
        if isinstance(self.prompt, list) and self.prompt and isinstance(self.prompt[0], str):
            if len(self.prompt) != 1:
                raise UnsupportedParameterError("'prompt': a batch of several prompts is not supported; send one "
                                                "request per prompt", param="prompt")
        if self.echo:
            raise UnsupportedParameterError("'echo' is not supported by webllm", param="echo")

    def prompt_input(self) -> str | list[int]:
        """The prompt as text, or as token ids."""
        p = self.prompt
        if isinstance(p, list) and p and isinstance(p[0], str):
            return p[0]
        return p
