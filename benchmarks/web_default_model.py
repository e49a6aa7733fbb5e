"""The default model (SmolLM2-135M-Instruct) in headless Chromium: bundle size, first and second load
time of the chat page (the engine in its Web Worker), and prefill / decode tok/s of one reply.

    .venv/bin/python benchmarks/web_default_model.py [--site DIR] [--max-tokens 64]

Writes the site with `export_site` (the default model is compiled into the cache once), serves it on
127.0.0.1 and drives Debian's chromium (WebGPU on SwiftShader here: the f32 profile on the CPU). The
first load reads the shards over the network; the second (a page reload in the same profile) from
Cache Storage. A measurement to print, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM_ARGS = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--no-sandbox", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def serve(folder: Path) -> tuple[ThreadingHTTPServer, list[str]]:
    log: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def end_headers(self):
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

        def do_GET(self):
            log.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, log


def main() -> None:
    from playwright.sync_api import sync_playwright

    from webllm.export_web import BUNDLE_FILES, export_site

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", default=None, help="write the site here (default: a temporary folder)")
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    site = Path(args.site or tempfile.mkdtemp(prefix="webllm-site-"))
    export_site(site, None)
    bundle = sum((site / f).stat().st_size for f in BUNDLE_FILES)
    print(f"bundle (page + worker + service worker): {bundle / 1024:.0f} KiB")
    httpd, log = serve(site)
    url = f"http://127.0.0.1:{httpd.server_port}/?max_tokens={args.max_tokens}&temperature=0"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(), executable_path="/usr/bin/chromium",
                                                   headless=True, args=CHROMIUM_ARGS)
        ctx.set_default_timeout(600_000)
        page = ctx.new_page()
        for label in ("first load (network)", "second load (Cache Storage)"):
            log.clear()
            t = time.perf_counter()
            page.goto(url) if label.startswith("first") else page.reload()
            page.wait_for_function("['ready', 'error'].includes(document.body.dataset.state)")
            dt = time.perf_counter() - t
            shards = sum(p.endswith(".bin") for p in log)
            phases = page.evaluate("webllmPage.loadPhases")
            steps = ", ".join(f"{a['phase']} {(b['t'] - a['t']) / 1000:.1f} s" for a, b in zip(phases, phases[1:], strict=False))
            print(f"{label}: {dt:.1f} s to ready ({shards} shards fetched); {page.text_content('#stats')}; {steps}")
            if page.evaluate("document.body.dataset.state") == "error":
                print("error:", page.text_content("#error"))
                return
        page.click("#new-chat")
        page.fill("#prompt", "What is the capital of France?")
        page.press("#prompt", "Enter")
        page.wait_for_function("document.body.dataset.state === 'ready' && "
                               "document.querySelectorAll('.msg.assistant:not(.pending)').length === 1")
        print("reply:", page.locator(".msg.assistant").last.text_content()[:200].replace("\n", " "))
        print("speed:", page.text_content("#stats"))
        ctx.close()
    httpd.shutdown()


if __name__ == "__main__":
    main()
