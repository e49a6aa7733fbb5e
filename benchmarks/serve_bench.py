"""Prefill and decode speed through `webllm serve`, as an OpenAI client sees it.

    python benchmarks/serve_bench.py                 # starts `webllm serve` (default model) on a free port
    python benchmarks/serve_bench.py --url http://127.0.0.1:8000 --model my-model

Prefill: prompt tokens / time to the first streamed token (a fresh prompt each round, so nothing is
cached). Decode: (completion tokens - 1) / time from the first to the last token. Greedy; the best of
--repeat rounds is reported, as `webllm bench` does.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

import httpx


def wait_for(url: str, proc: subprocess.Popen | None, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit("webllm serve exited")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("webllm serve did not come up")


def one(client, model: str, prompt: str, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    first = last = None
    usage = None
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                            max_tokens=max_tokens, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
        if chunk.usage:
            usage = chunk.usage
    n_prompt = usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens
    return {"prefill_tokens": n_prompt, "prefill_tok_s": n_prompt / (first - t0),
            "decode_tokens": usage.completion_tokens,
            "decode_tok_s": (usage.completion_tokens - 1) / (last - first) if last > first else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="a running server (default: start one)")
    ap.add_argument("--model", default="SmolLM2-135M-Instruct")
    ap.add_argument("--words", type=int, default=60, help="words of the prompt (default 60)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from openai import OpenAI

    proc = None
    url = args.url
    if url is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "webllm", "serve", "--port", str(port), "--quiet"],
                                env=dict(os.environ))
        url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url, proc)
        client = OpenAI(base_url=f"{url}/v1", api_key=os.environ.get("WEBLLM_API_KEY", "none"), max_retries=0)
        one(client, args.model, "Hello", 4)  # warm-up: pipelines compile on first use on some drivers
        runs = []
        for r in range(args.repeat):
            words = " ".join(f"item{r}-{i}" for i in range(args.words))
            runs.append(one(client, args.model, f"Repeat after me and then summarize: {words}", args.max_tokens))
        best = {k: max(x[k] for x in runs) for k in ("prefill_tok_s", "decode_tok_s")}
        print(json.dumps({"model": args.model, "prefill_tokens": runs[-1]["prefill_tokens"],
                          "decode_tokens": runs[-1]["decode_tokens"], **best, "runs": runs}))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
