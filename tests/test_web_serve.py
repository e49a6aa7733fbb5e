"""`webllm serve` with the browser build: one server gives both engines the same package. The page at
/ lists the served model (models.json) and runs it in the browser (Chromium, WebGPU on SwiftShader, its
own JavaScript engine in a Web Worker), while the native engine answers behind /v1."""

from __future__ import annotations

import httpx
import pytest
from serving import webllm_serve
from test_web import browser, bundle, package, wait_ready  # noqa: F401  (fixtures shared with test_web)


@pytest.fixture(scope="module")
def served(bundle, package):  # noqa: F811
    with webllm_serve(package, "--web", str(bundle), "--profile", "f32") as url:
        yield url + "/"


def test_the_page_served_by_webllm_serve_chats_like_the_api(browser, served, package):  # noqa: F811
    models = httpx.get(f"{served}models.json").json()["models"]
    assert [m["id"] for m in models] == [package.name]
    api = httpx.post(f"{served}v1/chat/completions", timeout=120, json={
        "model": package.name, "messages": [{"role": "user", "content": "t5 t6 t7"}], "max_tokens": 8,
        "temperature": 0}).json()["choices"][0]["message"]["content"]
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(served + "?sw=0&max_tokens=8&temperature=0")
    wait_ready(page)
    page.fill("#prompt", "t5 t6 t7")
    page.press("#prompt", "Enter")
    wait_ready(page, "document.querySelectorAll('.msg.assistant:not(.pending)').length === 1")
    shown = page.locator(".msg.assistant").last.text_content()
    # Both answer; token-for-token parity (same profile and decode variant) is test_web's parity test:
    # here each side tunes its own decode variant, whose sums differ in the last bits.
    assert shown.strip() and api.strip()
    assert errors == []
    page.close()
