"""llama.cpp (CUDA) and webllm side by side on the same Q4_0 GGUF files, on the GPU machine.

    # here (network): the sources, carried to the GPU machine as an ignored folder
    pip download --no-deps --no-binary=:all: llama-cpp-python==0.3.36 -d /tmp/sdist
    python benchmarks/peers.py slim /tmp/sdist/llama_cpp_python-0.3.36.tar.gz .dev-llamacpp/llama.cpp-vendor-0.3.36.tar.gz
    # on the GPU machine (no network): build, write models, measure both
    python benchmarks/peers.py all --llamacpp .dev-llamacpp/llama.cpp-vendor-0.3.36.tar.gz --work /tmp/peers --out peers.json

`all` builds llama.cpp with CUDA (llama-bench and llama-quantize only) in the background while it
writes random-weight F16 GGUFs of the Llama-3.2-1B and Llama-3.1-8B shapes; quantizes them to Q4_0
with `llama-quantize --pure` (every matrix Q4_0, embeddings and output head included, so both sides
read the same bytes: our GGUF import keeps Q4_0 blocks as they are); runs `llama-bench` (flash
attention, all layers on the GPU) and `webllm bench` (both profiles; with --dawn also through the Node
entry on Dawn, `webllm bench --dawn`) on those files; writes one JSON and prints a markdown table.
Every step's output goes to --work/logs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from random_checkpoint import SHAPES  # noqa: E402

DEFAULT_SHAPES = ("llama-3.2-1b", "llama-3.1-8b")
PROMPTS = (512, 1024)
CONTEXTS = (0, 4096)
DECODE = 128


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- llama.cpp sources and build -----------------------------------------------------------------

def slim(sdist: Path, out: Path) -> None:
    """The llama-cpp-python sdist's vendor/llama.cpp without docs, model vocabularies and web UI
    (76 MB -> 9 MB): small enough to carry to the GPU machine."""
    # top-level folders only: src/models/ holds the model graphs the build needs
    skip = ("llama.cpp/.git", "llama.cpp/docs/", "llama.cpp/models/", "llama.cpp/media/", "llama.cpp/.github/",
            "llama.cpp/tools/ui/", "llama.cpp/benches/", "llama.cpp/.devops/")
    with tarfile.open(sdist) as src, tarfile.open(out, "w:gz") as dst:
        for m in src.getmembers():
            i = m.name.find("/vendor/llama.cpp")
            if i < 0 or "/.git/" in m.name[:i + 1]:  # not the sdist's git objects (.git/modules/vendor/...)
                continue
            rel = "llama.cpp" + m.name[i + len("/vendor/llama.cpp"):]
            if (rel + "/").startswith(skip):
                continue
            m.name = rel
            m.pax_headers.pop("path", None)  # a long name's pax record would restore the old path
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)


def start_build(archive: Path, work: Path, jobs: int) -> tuple[subprocess.Popen, Path]:
    """Extract and build llama-bench + llama-quantize with CUDA in the background; returns the
    process and the folder the binaries will be in."""
    src = work / "llama.cpp"
    if not src.exists():
        with tarfile.open(archive) as t:
            t.extractall(work, filter="data")
        if not src.exists():  # a full sdist
            (next(work.glob("llama_cpp_python-*")) / "vendor" / "llama.cpp").rename(src)
    build = work / "build"
    arch = "90"
    try:
        cap = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.split()[0]
        arch = cap.replace(".", "")
    except (OSError, IndexError):
        pass
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    cmd = (f"cmake -S {src} -B {build} -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES={arch} "
           f"-DCMAKE_CUDA_COMPILER={nvcc} -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF "
           "-DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF "
           f"&& cmake --build {build} -j {jobs} --target llama-bench llama-quantize")
    logf = open(work / "logs" / "build.log", "w")
    return subprocess.Popen(cmd, shell=True, stdout=logf, stderr=subprocess.STDOUT), build / "bin"


# ---- random GGUF files ---------------------------------------------------------------------------

def _byte_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode map: the 256 single-character tokens of a byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs, strict=True))]


def _gguf_header(shape: str, path: Path, file_type: int):
    """A GGUFWriter with the llama metadata and a byte-level BPE vocabulary of the model's size."""
    from gguf import GGUFWriter, TokenType

    s = SHAPES[shape]
    wr = GGUFWriter(str(path), "llama")
    wr.add_name(f"random {shape}")
    wr.add_block_count(s["num_hidden_layers"])
    wr.add_context_length(131072)
    wr.add_embedding_length(s["hidden_size"])
    wr.add_feed_forward_length(s["intermediate_size"])
    wr.add_head_count(s["num_attention_heads"])
    wr.add_head_count_kv(s["num_key_value_heads"])
    wr.add_key_length(s["head_dim"])
    wr.add_value_length(s["head_dim"])
    wr.add_rope_dimension_count(s["head_dim"])
    wr.add_rope_freq_base(500000.0)
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_file_type(file_type)
    vocab = s["vocab_size"]
    tokens = _byte_alphabet() + ["w2", "w25"] + [f"w{i}" for i in range(258, vocab)]
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("llama-bpe")
    wr.add_token_list(tokens)
    wr.add_token_types([TokenType.CONTROL if i in (0, 1) else TokenType.NORMAL for i in range(vocab)])
    wr.add_token_merges(["w 2", "w2 5"])
    wr.add_bos_token_id(0)
    wr.add_eos_token_id(1)
    return wr


def _write_tensors(wr, shape: str, matrix, raw_dtype=None) -> None:
    """Every tensor of the llama layout: norms ones (f32), matrices from matrix(n, k)."""
    s = SHAPES[shape]
    h, inter, hd = s["hidden_size"], s["intermediate_size"], s["head_dim"]
    nq, nkv, vocab = s["num_attention_heads"], s["num_key_value_heads"], s["vocab_size"]

    def add(name, n, k):
        wr.add_tensor(name, matrix(n, k), raw_dtype=raw_dtype)

    add("token_embd.weight", vocab, h)
    wr.add_tensor("output_norm.weight", np.ones(h, np.float32))
    if not s["tie_word_embeddings"]:
        add("output.weight", vocab, h)
    for i in range(s["num_hidden_layers"]):
        p = f"blk.{i}."
        wr.add_tensor(p + "attn_norm.weight", np.ones(h, np.float32))
        wr.add_tensor(p + "ffn_norm.weight", np.ones(h, np.float32))
        add(p + "attn_q.weight", nq * hd, h)
        add(p + "attn_k.weight", nkv * hd, h)
        add(p + "attn_v.weight", nkv * hd, h)
        add(p + "attn_output.weight", h, nq * hd)
        add(p + "ffn_gate.weight", inter, h)
        add(p + "ffn_up.weight", inter, h)
        add(p + "ffn_down.weight", h, inter)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def write_f16_gguf(shape: str, path: Path, seed: int = 0) -> None:
    """A random-weight F16 GGUF of a real model's shape (llama architecture, byte-level BPE vocab of
    the model's size). Weights are normal(0, 0.02) values drawn once into a pool that every tensor
    takes a different window of (drawing 8e9 numbers would take minutes; speed does not care)."""
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(1 << 26, dtype=np.float32) * 0.02).astype(np.float16)
    half = pool.size
    pool = np.concatenate([pool, pool])

    def matrix(n: int, k: int) -> np.ndarray:
        if n * k <= half:
            off = int(rng.integers(0, half))
            return pool[off : off + n * k].reshape(n, k)
        return np.tile(pool[:half], -(-n * k // half))[: n * k].reshape(n, k)

    _write_tensors(_gguf_header(shape, path, 1), shape, matrix)


def write_q4_0_gguf(shape: str, path: Path, seed: int = 0) -> None:
    """A random Q4_0 GGUF written directly (random codes, scales in [0.002, 0.02]): for quick
    experiments without llama.cpp. The side-by-side comparison uses llama-quantize's output instead."""
    from gguf import GGMLQuantizationType

    rng = np.random.default_rng(seed)
    nblocks = 1 << 22
    pool = rng.integers(0, 256, size=(2 * nblocks, 18), dtype=np.uint8)
    pool[:, :2] = rng.uniform(0.002, 0.02, size=(2 * nblocks, 1)).astype(np.float16).view(np.uint8)

    def matrix(n: int, k: int) -> np.ndarray:
        b = n * k // 32
        if b <= nblocks:
            off = int(rng.integers(0, nblocks))
            return pool[off : off + b].reshape(n, k // 32 * 18)
        return np.tile(pool[:nblocks], (-(-b // nblocks), 1))[:b].reshape(n, k // 32 * 18)

    _write_tensors(_gguf_header(shape, path, 2), shape, matrix, GGMLQuantizationType.Q4_0)


# ---- measuring -----------------------------------------------------------------------------------

def run(cmd: list[str] | str, logfile: Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    with open(logfile, "w") as f:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True, shell=isinstance(cmd, str), **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({r.returncode}); see {logfile}")
    return r


def llama_bench(bindir: Path, gguf: Path, logs: Path, repeat: int) -> list[dict]:
    r = run([str(bindir / "llama-bench"), "-m", str(gguf), "-ngl", "99", "-fa", "1", "-p", ",".join(map(str, PROMPTS)),
             "-n", str(DECODE), "-d", ",".join(map(str, CONTEXTS)), "-r", str(repeat), "-o", "json"],
            logs / f"llama-bench-{gguf.stem}.log")
    return json.loads(r.stdout)


def webllm_bench(pkg: Path, profile: str, logs: Path, repeat: int, dawn: bool = False) -> dict:
    """`webllm bench` of one profile; with `dawn` also through the Node entry on Dawn (`--dawn`):
    then {"hosts": {"native": ..., "dawn": ...}}, the Dawn side "unavailable" for a profile it lacks."""
    r = run([sys.executable, "-m", "webllm", "bench", str(pkg), "--quiet", "--json", "--profile", profile,
             "--prompt-tokens", ",".join(map(str, PROMPTS)), "--context", ",".join(map(str, CONTEXTS)),
             "--decode-tokens", str(DECODE), "--repeat", str(repeat), *(["--dawn"] if dawn else [])],
            logs / f"webllm-bench-{pkg.name}-{profile}.log", check=not dawn)
    if dawn and not r.stdout.strip():  # a failed Dawn side still prints both columns (exit status 1)
        raise RuntimeError(f"webllm bench --dawn failed ({r.returncode}); see {logs}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def table(res: dict) -> str:
    """Markdown: one row per shape, llama.cpp beside webllm f16 / f32."""
    out = ["| shape | | decode (ctx 0) | decode (ctx 4096) | prefill 512 | prefill 1024 |",
           "| --- | --- | --- | --- | --- | --- |"]
    for shape, r in res["shapes"].items():
        lc = {(e["n_prompt"], e["n_gen"], e.get("n_depth", 0)): e["avg_ts"] for e in r.get("llama.cpp", [])}
        out.append(f"| {shape} | llama.cpp CUDA | {lc.get((0, DECODE, 0), 0):,.0f} | {lc.get((0, DECODE, 4096), 0):,.0f} | "
                   f"{lc.get((512, 0, 0), 0):,.0f} | {lc.get((1024, 0, 0), 0):,.0f} |")
        for key in ("webllm f16", "webllm f32", "webllm f16 dawn", "webllm f32 dawn"):
            w = r.get(key)
            if not w:
                continue
            if "unavailable" in w or "error" in w:
                out.append(f"| | {key} | {w.get('unavailable') or w.get('error')} | | | |")
                continue
            dec = {d["context"] if d["context"] > 1 else 0: d for d in w["decode"]}
            pre = {p["tokens"]: p["tok_s"] for p in w["prefill"]}
            d0, d4 = dec.get(0, {}), dec.get(4096, {})
            out.append(f"| | {key} | {d0.get('tok_s', 0):,.0f} (roofline {d0.get('roofline_ratio', 0):.2f}) | "
                       f"{d4.get('tok_s', 0):,.0f} | {pre.get(512, 0):,.0f} | {pre.get(1024, 0):,.0f} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("slim")
    s.add_argument("sdist", type=Path)
    s.add_argument("out", type=Path)
    g = sub.add_parser("gguf", help="write one random GGUF (F16, or Q4_0 directly with --q4_0)")
    g.add_argument("shape", choices=sorted(SHAPES))
    g.add_argument("out", type=Path)
    g.add_argument("--q4_0", action="store_true")
    a = sub.add_parser("all")
    a.add_argument("--llamacpp", type=Path, help="llama.cpp source archive (slim or the full sdist)")
    a.add_argument("--bin", type=Path, help="already built llama-bench / llama-quantize folder (skips the build)")
    a.add_argument("--work", type=Path, default=Path("/tmp/peers"))
    a.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    a.add_argument("--shapes", default=",".join(DEFAULT_SHAPES))
    a.add_argument("--profiles", default="f16,f32")
    a.add_argument("--repeat", type=int, default=2)
    a.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    a.add_argument("--skip-llamacpp", action="store_true")
    a.add_argument("--dawn", action="store_true",
                   help="webllm also through the Node entry on Dawn (webllm bench --dawn; needs node and the npm "
                        "package webgpu: WEBLLM_NODE, WEBLLM_NODE_MODULES)")
    args = ap.parse_args()
    if args.cmd == "slim":
        slim(args.sdist, args.out)
        return 0
    if args.cmd == "gguf":
        (write_q4_0_gguf if args.q4_0 else write_f16_gguf)(args.shape, args.out)
        return 0

    work = args.work
    (work / "logs").mkdir(parents=True, exist_ok=True)
    shapes = args.shapes.split(",")
    res: dict = {"date": time.strftime("%Y-%m-%d"), "host": platform.node(), "shapes": {s: {} for s in shapes}}
    try:
        res["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                            "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    build, bindir = None, args.bin
    if bindir is None:
        log("building llama.cpp (background)")
        build, bindir = start_build(args.llamacpp, work, args.jobs)
    f16 = {}
    for shape in shapes:
        f16[shape] = work / f"{shape}-f16.gguf"
        if not f16[shape].exists():
            log(f"writing {f16[shape]}")
            write_f16_gguf(shape, f16[shape].with_suffix(".tmp"))
            f16[shape].with_suffix(".tmp").rename(f16[shape])
    if build is not None:
        log("waiting for the llama.cpp build")
        if build.wait() != 0:
            tail = (work / "logs" / "build.log").read_text(errors="replace").splitlines()[-25:]
            raise RuntimeError(f"llama.cpp build failed; see {work / 'logs' / 'build.log'}, which ends:\n"
                               + "\n".join(tail))
        log("build done")
    q4 = {}
    for shape in shapes:
        q4[shape] = work / f"{shape}-q4_0.gguf"
        if not q4[shape].exists():
            log(f"quantizing {shape} (--pure Q4_0)")
            run([str(bindir / "llama-quantize"), "--pure", str(f16[shape]), str(q4[shape]), "Q4_0", str(args.jobs)],
                work / "logs" / f"quantize-{shape}.log")
            f16[shape].unlink()
    # our compiles (CPU) run while llama-bench uses the GPU
    compiles = {}
    for shape in shapes:
        pkg = work / f"{shape}-pkg"
        if not (pkg / "manifest.json").exists():
            logf = open(work / "logs" / f"compile-{shape}.log", "w")
            compiles[shape] = (time.perf_counter(), subprocess.Popen(
                [sys.executable, "-m", "webllm", "compile", str(q4[shape]), "-o", str(pkg), "--quiet",
                 "--context-window", str(max(CONTEXTS) + 2 * DECODE + 64), "--prefill-chunk", str(max(PROMPTS) // 2)],
                stdout=logf, stderr=subprocess.STDOUT))
    if not args.skip_llamacpp:
        for shape in shapes:
            log(f"llama-bench {shape}")
            res["shapes"][shape]["llama.cpp"] = llama_bench(bindir, q4[shape], work / "logs", args.repeat)
            for e in res["shapes"][shape]["llama.cpp"]:
                log(f"  llama.cpp pp{e['n_prompt']} tg{e['n_gen']} d{e.get('n_depth', 0)}: {e['avg_ts']:.1f} tok/s")
    for shape in shapes:
        if shape in compiles:
            t0, p = compiles[shape]
            if p.wait() != 0:
                raise RuntimeError(f"compile of {shape} failed; see {work / 'logs'}")
            res["shapes"][shape]["compile_s_concurrent"] = time.perf_counter() - t0
        for prof in args.profiles.split(","):
            log(f"webllm bench {shape} {prof}")
            r = webllm_bench(work / f"{shape}-pkg", prof, work / "logs", args.repeat, dawn=args.dawn)
            for host, h in (r["hosts"] if args.dawn else {"native": r}).items():
                key = f"webllm {prof}" + (" dawn" if host == "dawn" else "")
                res["shapes"][shape][key] = h
                log(f"  {key}: {json.dumps({k: v for k, v in h.items() if k not in ('driver',)})}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
