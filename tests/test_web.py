"""The browser side, in a real browser: Debian's Chromium, headless, WebGPU on SwiftShader (f32 profile:
no shader-f16), driven by Playwright, against the site `webllm export-web` writes, served by a plain
static HTTP server on 127.0.0.1 (a thread here).

What is pinned: the JavaScript runtime gives the native runtime's token ids on the same package
(greedy and seeded; same profile and decode variant on both sides) and logits within f32 tolerance;
the engine's OpenAI shapes, streaming, stop strings and KV reuse across turns; shards kept in Cache
Storage (a second load fetches none; a corrupted cached shard is fetched again); recovery from a lost
device with the same answer; the chat page in its Web Worker (a main-thread timer keeps ticking),
model output shown as text, never as HTML; the conversation restored after a reload; a screenshot.

One browser (one persistent profile) serves the whole module; shaders compile on the CPU, so each
model load costs seconds: the tests share loads where they can.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import TOL_F32, Spec, make_checkpoint, rel_err  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# DESIGN.md: WebGPU on SwiftShader, headless, as root, with nothing reaching out to the network.
# Dawn's zero-initialization of workgroup memory off, as in the Node tests but their parity file
# (tests/test_web_node.py): SwiftShader compiles those loops slowly.
CHROMIUM_ARGS = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--no-sandbox", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-dawn-features=disable_workgroup_init"]
ARTIFACTS = ROOT / "test-artifacts"
SPEC = Spec("web", vocab_size=301, seed=3)
CONTEXT = 256
PROMPT = [5, 17, 42, 99, 7, 250, 3, 64, 128, 11, 200, 33]
SEEDED = {"temperature": 0.8, "top_p": 0.9, "seed": 1234}


def write_html_tokenizer(folder: Path, vocab_size: int) -> None:
    """A word-level tokenizer whose words are partly HTML: `<script>window.pwned=i</script>` for
    i % 4 == 1, `<b>bi</b>` for i % 4 == 2, else `ti`, so that the model's output contains markup
    the page must show as text."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    def word(i: int) -> str:
        return {1: f"<script>window.pwned={i}</script>", 2: f"<b>b{i}</b>"}.get(i % 4, f"t{i}")

    tok = Tokenizer(models.WordLevel({word(i): i for i in range(vocab_size)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))


@pytest.fixture(scope="module")
def bundle() -> Path:
    """web/dist, built by scripts/install.sh (rebuilt here when node_modules exists but dist is stale)."""
    web = ROOT / "web"
    if not (web / "node_modules").is_dir():
        pytest.fail("web/node_modules is missing: run scripts/install.sh --test (npm ci + the bundle build in web/)")
    sources = [p for d in ("src", "page", "test") for p in (web / d).rglob("*.js")] + list((web / "page").glob("*"))
    built = web / "dist" / "worker.js"
    if not built.exists() or built.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        subprocess.run(["node", "build.mjs"], cwd=web, check=True, capture_output=True)
    return web / "dist"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    from webllm.compiler.compile import CompileOptions, compile_model

    root = tmp_path_factory.mktemp("webpkg")
    make_checkpoint(SPEC, root / "ckpt")
    write_html_tokenizer(root / "ckpt", SPEC.vocab_size)
    out = root / "tiny"
    # without the 32 KiB prefill variants (tests/test_web_node.py runs them on Dawn): the page times its
    # prefill variants at first load, and in Chromium on SwiftShader, with workgroup memory zeroed, their
    # kernels take 25-50 s to compile (the page was ready in 70 s with them, 29 s without)
    compile_model(root / "ckpt", out, CompileOptions(quantization="q4f16_1", progress=False, context_window=CONTEXT,
                                                     prefill_wide=False))
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory, bundle, package) -> Path:
    from webllm.export_web import export_site

    out = tmp_path_factory.mktemp("site")
    export_site(out, [str(package)], include_test_harness=True, progress=False)
    shutil.copytree(ROOT / "tests" / "conformance", out / "conformance", ignore=shutil.ignore_patterns("checkpoint"))
    return out


class Server:
    """A static file server in a thread: no HTTP caching (the runtime's Cache Storage must be the only
    cache), and a log of the paths it served."""

    def __init__(self, folder: Path):
        log = self.log = []

        class Handler(SimpleHTTPRequestHandler):
            def end_headers(self):
                self.send_header("Cache-Control", "no-store")
                super().end_headers()

            def do_GET(self):
                log.append(self.path.split("?")[0])
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def shards(self) -> list[str]:
        return [p for p in self.log if p.endswith(".bin")]


@pytest.fixture(scope="module")
def server(site):
    s = Server(site)
    yield s
    s.httpd.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium with a fresh profile for the module (a persistent context: pages share
    Cache Storage, as tabs of one browser do)."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install.sh --test installs Debian's chromium")
    with playwright.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1000, "height": 700})
        ctx.set_default_timeout(120_000)
        yield ctx
        ctx.close()


@pytest.fixture(scope="module")
def harness(browser, server):
    """The test harness page (engine and runtime on the main thread, as `window.webllm`)."""
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "test/")
    page.wait_for_function("window.webllm !== undefined")
    page.errors = errors
    yield page
    page.close()


@pytest.fixture(scope="module")
def variant(package) -> str:
    """The decode variant both runtimes use (the plan's first): parity needs the same kernels."""
    plan = json.loads((package / "plan-f32.json").read_text())
    return next(iter(plan["decode_variants"]))


@pytest.fixture(scope="module")
def native(package, variant, gpu):
    """The native runtime on the same package, profile f32 and decode variant (on lavapipe)."""
    from webllm.runtime import Model

    adapter, device = gpu
    m = Model.load(package, profile="f32", decode_variant=variant, prefill_variant="rule", progress=False, adapter=adapter,
                   device=device)

    def run(sampling: dict | None, n: int = 24):
        m.reset()
        m.set_sampling(**(sampling or {}))
        m.prefill(PROMPT)
        logits = m.logits()
        m.reset()
        m.set_sampling(**(sampling or {}))
        return logits, list(m.generate(PROMPT, n))

    return run


def test_runtime_parity_with_native(harness, native, variant):
    """Greedy and seeded ids equal the native runtime's (exactly); logits after the prompt within f32
    tolerance (TOL_F32: the two adapters differ only in summation order and exp/rsqrt ulps)."""
    got = harness.evaluate("""async ([variant, prompt, seeded]) => {
        const m = await webllm.Model.load('../models/tiny/', {profile: 'f32', decodeVariant: variant, prefillVariant: 'rule'});
        const out = {};
        for (const [name, s] of [['greedy', {}], ['seeded', seeded]]) {
            m.reset(); m.setSampling(s); await m.prefill(prompt);
            const logits = Array.from(await m.logits());
            m.reset(); m.setSampling(s);
            const ids = [];
            for await (const t of m.generate(prompt, 24)) ids.push(t);
            out[name] = {logits, ids};
        }
        out.profile = m.profile; out.variant = m.decodeVariant;
        m.destroy();
        return out;
    }""", [variant, PROMPT, SEEDED])
    assert (got["profile"], got["variant"]) == ("f32", variant)
    for name, sampling in (("greedy", None), ("seeded", SEEDED)):
        logits, ids = native(sampling)
        err = rel_err(np.array(got[name]["logits"], np.float32), logits.astype(np.float64))
        assert err < TOL_F32, f"{name}: logits differ from the native runtime's by {err:.2e}"
        assert got[name]["ids"] == ids, f"{name}: browser ids {got[name]['ids']} != native {ids}"
    assert got["greedy"]["ids"] != got["seeded"]["ids"]


def test_conformance_fixture_in_browser(harness):
    """tests/conformance (docs/FORMAT.md) through the JavaScript runtime in Chromium, f32 profile: every
    case passes (ids exact, logits within the fixture's tolerance)."""
    results = harness.evaluate("""async () => {
        const expected = await (await fetch('../conformance/expected.json')).json();
        const m = await webllm.Model.load('../conformance/' + expected.package + '/', {profile: 'f32'});
        try { return await webllm.runConformance(m, expected); } finally { m.destroy(); }
    }""")
    assert results and all(r["ok"] for r in results), [r for r in results if not r["ok"]]


@pytest.fixture(scope="module")
def engine(harness, variant):
    """An engine on the harness page's main thread (window.engine), f32 profile."""
    harness.evaluate("""async (variant) => {
        window.engine = await webllm.createEngine('../models/tiny/',
            {profile: 'f32', decodeVariant: variant, prefillVariant: 'rule'});
    }""", variant)
    return harness


def wait_ready(page, extra: str = "true") -> None:
    """Wait for the page to be ready (and `extra`); on a timeout, say what the page shows instead. Up to
    240 s: on a slow 2-core sandbox the first load (8 decode variants timed on SwiftShader) took over 90."""
    try:
        page.wait_for_function(f"document.body.dataset.state === 'ready' && ({extra})", timeout=240_000)
    except Exception:
        shown = page.evaluate("[document.body.dataset.state, document.getElementById('progress-text').textContent, "
                              "document.getElementById('error').textContent]")
        pytest.fail(f"the page is not ready: state, progress, error = {shown}")


def chat(page, messages, **kw) -> dict:
    kw.setdefault("temperature", 0)
    return page.evaluate("([messages, kw]) => engine.chat.completions.create({messages, ...kw})", [messages, kw])


def test_engine_chat_streaming_stop_and_cache(engine):
    """OpenAI shapes; the stream's text equals the plain reply; usage on the last chunk; a stop string
    that spans token boundaries cuts the reply exactly before it; a second turn prefills only new tokens."""
    user = [{"role": "user", "content": "t5 t6 t7"}]
    engine.evaluate("engine.resetChat()")
    plain = chat(engine, user, max_tokens=12)
    assert plain["object"] == "chat.completion" and plain["id"].startswith("chatcmpl-")
    choice = plain["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["role"] == "assistant"
    text = choice["message"]["content"]
    assert len(text.split(" ")) == 12 and plain["usage"]["completion_tokens"] == 12

    chunks = engine.evaluate("""async (messages) => {
        const out = [];
        const req = {messages, max_tokens: 12, stream: true, temperature: 0};
        for await (const c of await engine.chat.completions.create(req)) out.push(c);
        return out;
    }""", user)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == text
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["usage"]["completion_tokens"] == 12
    assert all("usage" not in c for c in chunks[:-1])
    # the same prompt again: everything but its last token was in the KV cache
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == chunks[-1]["usage"]["prompt_tokens"] - 1

    words = text.split(" ")
    stop = words[2][-3:] + " " + words[3][:2]  # the end of word 3, the space, the start of word 4
    cut = chat(engine, user, max_tokens=12, stop=["never-there", stop])
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["choices"][0]["message"]["content"] == text[: text.index(stop)]

    follow = chat(engine, [*user, {"role": "assistant", "content": text}, {"role": "user", "content": "t9"}],
                  max_tokens=4)
    u = follow["usage"]
    assert u["prompt_tokens_details"]["cached_tokens"] > 10 and u["prompt_tokens"] > u["prompt_tokens_details"]["cached_tokens"]

    completion = engine.evaluate("engine.completions.create({prompt: 't1 t2 t3', max_tokens: 5, seed: 1})")
    assert completion["object"] == "text_completion" and completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"]["completion_tokens"] == 5

    err = engine.evaluate("""async () => {
        try { await engine.chat.completions.create({messages: [{role: 'user', content: 'x'}], tools: []}); }
        catch (e) { return [e.name, e.param]; }
    }""")
    assert err == ["UnsupportedParameterError", "tools"]
    err = engine.evaluate("""async () => {
        try { await engine.chat.completions.create({messages: [{role: 'user', content: 'x'}], model: 'gpt-9'}); }
        catch (e) { return [e.name, e.param]; }
    }""")
    assert err == ["ModelNotFoundError", "model"]


def test_device_loss_recovered(engine):
    """After device.destroy() the engine reloads from the weight cache by itself; the next turn succeeds
    and answers exactly as it would have without the loss."""
    u1 = [{"role": "user", "content": "t8 t9"}]
    engine.evaluate("engine.resetChat()")
    r1 = chat(engine, u1, max_tokens=6)["choices"][0]["message"]["content"]
    turn2 = [*u1, {"role": "assistant", "content": r1}, {"role": "user", "content": "t10 t11"}]
    expected = chat(engine, turn2, max_tokens=8)["choices"][0]["message"]["content"]

    engine.evaluate("engine.resetChat()")
    assert chat(engine, u1, max_tokens=6)["choices"][0]["message"]["content"] == r1
    reloads = engine.evaluate("engine.stats().reloads")
    engine.evaluate("engine.model.device.destroy()")
    after = chat(engine, turn2, max_tokens=8)
    assert after["choices"][0]["message"]["content"] == expected
    assert after["usage"]["prompt_tokens_details"]["cached_tokens"] == 0  # the conversation was prefilled again
    assert engine.evaluate("engine.stats().reloads") == reloads + 1


def test_shards_cached_and_verified(harness, server, site, variant):
    """A second load fetches no shard; a cached shard that fails its hash is fetched again."""
    n_shards = len(json.loads((site / "models/tiny/manifest.json").read_text())["shards"])
    load = """async (variant) => {
        const m = await webllm.Model.load('../models/tiny/', {profile: 'f32', decodeVariant: variant, prefillVariant: 'rule'});
        m.destroy();
    }"""
    harness.evaluate("caches.delete('webllm-shards')")
    server.log.clear()
    harness.evaluate(load, variant)
    assert len(server.shards()) == n_shards
    server.log.clear()
    harness.evaluate(load, variant)
    assert server.shards() == [], "the second load fetched shards over the network"
    harness.evaluate("""async () => {
        const cache = await caches.open('webllm-shards');
        const [first] = await cache.keys();
        const bytes = new Uint8Array(await (await cache.match(first)).arrayBuffer());
        bytes[bytes.length >> 1] ^= 0xff;
        await cache.put(first, new Response(bytes));
    }""")
    harness.evaluate(load, variant)
    assert len(server.shards()) == 1, "the corrupted shard was not fetched again"


def test_page_chat_in_worker(browser, server):
    """The chat page: the engine in its Web Worker (a main-thread timer keeps ticking while it
    generates), model output with <script> shown as text and never run, speed figures, the
    conversation restored after a reload, and a screenshot for the record."""
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # a main-thread timer from the very start: it must keep ticking while the worker loads the model
    # (kernels compile for seconds on SwiftShader) and while it generates
    page.add_init_script("window.ticks = []; setInterval(() => window.ticks.push(performance.now()), 20);")
    page.goto(server.url + "?sw=0&max_tokens=64&temperature=0")
    wait_ready(page)
    page.fill("#prompt", "t5 t6 t7")
    page.press("#prompt", "Enter")
    wait_ready(page, "document.querySelectorAll('.msg.assistant:not(.pending)').length === 1")
    ticks = page.evaluate("window.ticks")
    gaps = np.diff(ticks)
    assert len(ticks) > 50 and gaps.max() < 1000, \
        f"the main thread was blocked for {gaps.max():.0f} ms while the model loaded and generated"

    reply = page.locator(".msg.assistant").last
    text = reply.text_content()
    assert "<script>" in text, f"precondition: the tiny model's reply should contain a <script> word: {text!r}"
    assert page.locator("#messages script").count() == 0 and page.locator("#messages b").count() == 0
    assert page.evaluate("window.pwned") is None
    assert "decode" in page.text_content("#stats") and "tok/s" in page.text_content("#stats")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-chat.png"), full_page=True)

    n = page.locator(".msg").count()
    assert n == 2
    page.reload()
    wait_ready(page)
    assert page.locator(".msg").count() == n and page.locator(".msg.assistant").last.text_content() == text

    # Stop: clicked as soon as the reply starts streaming, the reply ends well before its 64 tokens
    page.evaluate("""() => new MutationObserver((_, obs) => {
        const b = document.querySelector('.msg.assistant.pending');
        if (b && b.textContent.length > 0) { obs.disconnect(); document.getElementById('stop').click(); }
    }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true})""")
    page.fill("#prompt", "t9")
    page.press("#prompt", "Enter")
    wait_ready(page, "document.querySelectorAll('.msg.assistant:not(.pending)').length === 2")
    assert len(page.locator(".msg.assistant").last.text_content().split()) < 48

    page.click("#new-chat")
    assert page.locator(".msg").count() == 0
    assert errors == []
    page.close()


def test_page_works_offline(browser, site):
    """After a first visit (and one with the service worker in control), the page loads the model and
    answers with the server gone: page files from the service worker's cache, shards from Cache Storage."""
    s = Server(site)
    page = browser.new_page()
    page.goto(s.url + "?max_tokens=4")
    wait_ready(page)
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.reload()
    wait_ready(page)
    assert page.evaluate("navigator.serviceWorker.controller !== null")
    s.httpd.shutdown()
    s.httpd.server_close()
    page.reload()
    wait_ready(page)
    page.click("#new-chat")
    page.fill("#prompt", "t5")
    page.press("#prompt", "Enter")
    wait_ready(page, "document.querySelectorAll('.msg.assistant:not(.pending)').length === 1")
    assert page.text_content("#error") == ""
    page.close()


def test_page_without_webgpu(browser, server):
    page = browser.new_page()
    page.add_init_script("delete Navigator.prototype.gpu")
    page.goto(server.url + "?sw=0")
    page.wait_for_function("document.body.dataset.state === 'no-webgpu'")
    assert "no WebGPU" in page.text_content("#error")
    page.close()


def test_export_web_without_bundle(tmp_path, monkeypatch, capsys):
    """`webllm export-web` with no built bundle: one line saying how to build it."""
    from webllm import export_web
    from webllm.cli.main import main

    monkeypatch.setattr(export_web, "BUNDLE_DIR", tmp_path / "nowhere")
    assert main(["export-web", str(tmp_path / "site")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("webllm: error: the browser bundle is not built") and "npm run build" in err
    assert "\n" not in err


def test_export_web_site(site):
    index = json.loads((site / "models.json").read_text())
    assert [m["id"] for m in index["models"]] == ["tiny"]
    assert (site / "models/tiny/manifest.json").exists() and (site / "worker.js").exists()
