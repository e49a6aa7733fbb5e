"""What a GPU's Vulkan driver made of a package's decode kernels: registers a thread and the other
statistics of VK_KHR_pipeline_executable_properties, beside each kernel's workgroup size, grid and
dispatches a step. wgpu passes none of this on, so the kernels' SPIR-V (naga's, as wgpu hands it to the
driver) is captured first, then built as pipelines by a small C program (kernel_stats.c) on the GPU's
machine.

    # 1. where gfxreconstruct is installed (here: lavapipe), the package's SPIR-V into OUT
    python benchmarks/kernel_stats.py spirv PACKAGE OUT [--profile f16] [--variant q8gemv32sg]
        [--extra NAME=FILE.wgsl ...]
    # 2. on the GPU's machine (a C compiler and the Vulkan loader; Vulkan headers in --include)
    python benchmarks/kernel_stats.py stats OUT [--include DIR] [--json out.json]

naga's SPIR-V depends on the adapter only through the features a kernel uses (shader-f16, subgroups,
integer dot products), which lavapipe offers too. On NVIDIA the statistics include the register count
a thread; with 64K registers and at most 2,048 threads an SM, `wg/SM (regs)` estimates how many of a
kernel's workgroups an SM can keep resident for its registers alone (allocated 8 a thread at a time),
and `waves` how many rounds of that its grid needs on the GPU's SMs (--sms, an H100's 132). Workgroup
memory and the driver's other limits can lower both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from profile_decode import label  # noqa: E402


def decode_kernels(package: Path, profile: str, variant: str | None) -> tuple[str, list[dict]]:
    """The decode step's kernels of the plan (in order of first use): name, file, bindings, its grids
    and how many dispatches a step."""
    plan = json.loads((package / f"plan-{profile}.json").read_text())
    variants = plan["decode_variants"]
    if variant is None:
        variant = next(iter(variants))
    if variant not in variants:
        sys.exit(f"kernel_stats: {package}: no decode variant {variant!r} (the plan has {', '.join(variants)})")
    dispatches = variants[variant]
    count = Counter(d["kernel"] for d in dispatches)
    grids: dict[str, set] = {}
    for d in dispatches:
        grids.setdefault(d["kernel"], set()).add(tuple(d["workgroups"]))
    labels = {}
    for d in dispatches:
        labels.setdefault(d["kernel"], label(d, plan))
    out = []
    for name in labels:
        k = plan["kernels"][name]
        out.append({"kernel": name, "label": labels[name], "file": k["file"], "bindings": k["bindings"],
                    "per_step": count[name], "grids": sorted(grids[name])})
    return variant, out


def create_pipelines(package: Path, listing: Path) -> None:
    """(Run under gfxreconstruct.) Builds each listed kernel as a compute pipeline, in order."""
    from webllm.runtime.device import create_shader_module, request_device

    kernels = json.loads(listing.read_text())
    adapter, dev = request_device(want_features=["shader-f16", "subgroups"])
    for k in kernels:
        src = Path(k["path"]).read_text() if "path" in k else (package / "kernels" / k["file"]).read_text()
        dev.create_compute_pipeline(layout="auto", compute={"module": create_shader_module(dev, src),
                                                            "entry_point": "main"})
    print(f"created {len(kernels)} pipelines", flush=True)


def capture_spirv(package: Path, out: Path, profile: str, variant: str | None, extra: list[str]) -> None:
    if not shutil.which("gfxrecon-capture-vulkan.py") or not shutil.which("gfxrecon-extract"):
        sys.exit("kernel_stats: spirv needs gfxreconstruct (gfxrecon-capture-vulkan.py, gfxrecon-extract)")
    variant, kernels = decode_kernels(package, profile, variant)
    for e in extra:  # NAME=FILE: other WGSL kernels (a variant under study), captured the same way
        name, _, path = e.partition("=")
        kernels.append({"kernel": name, "label": name, "path": str(Path(path).resolve()), "per_step": 0, "grids": []})
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kernel-stats-") as tmp:
        listing = Path(tmp) / "kernels.json"
        listing.write_text(json.dumps(kernels))
        capture = Path(tmp) / "capture.gfxr"
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        r = subprocess.run(["gfxrecon-capture-vulkan.py", "-o", str(capture), "--no-file-timestamp", sys.executable,
                            str(Path(__file__).resolve()), "_create", str(package), str(listing)],
                           capture_output=True, text=True, env=env)
        if r.returncode or "created" not in r.stdout:
            sys.exit(f"kernel_stats: the capture failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        # it writes the shaders to <capture's name>.shaders in its working directory
        subprocess.run(["gfxrecon-extract", str(capture)], capture_output=True, text=True, check=True, cwd=tmp)
        shaders = sorted((Path(str(capture) + ".shaders")).iterdir(), key=lambda p: int(re.sub(r"\D", "", p.name)))
        # wgpu builds a few pipelines of its own when it opens the device; ours are the last ones
        if len(shaders) < len(kernels):
            sys.exit(f"kernel_stats: the capture holds {len(shaders)} shaders, fewer than {len(kernels)} kernels")
        for k, spv in zip(kernels, shaders[-len(kernels):], strict=True):
            shutil.copy(spv, out / f"{k['kernel']}.spv")
    (out / "kernels.json").write_text(json.dumps({"package": str(package), "profile": profile, "variant": variant,
                                                  "kernels": kernels}, indent=1))
    print(f"{len(kernels)} kernels of {package.name} ({profile}, decode variant {variant}) -> {out}")


def driver_stats(spvs: list[Path], include: str | None) -> list[dict]:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        sys.exit("kernel_stats: stats needs a C compiler (cc or gcc, or $CC)")
    with tempfile.TemporaryDirectory(prefix="kernel-stats-") as tmp:
        exe = Path(tmp) / "kernel_stats"
        cmd = [cc, "-O1", str(HERE / "kernel_stats.c"), "-o", str(exe), "-ldl"] + (["-I", include] if include else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"kernel_stats: building kernel_stats.c failed (Vulkan headers? --include): {r.stderr.strip()[-400:]}")
        r = subprocess.run([str(exe), *map(str, spvs)], capture_output=True, text=True)
        sys.stderr.write(r.stderr)
        if r.returncode:
            sys.exit(1)
        return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a1 = sub.add_parser("spirv", help="capture the SPIR-V of a package's decode kernels (needs gfxreconstruct)")
    a1.add_argument("package", type=Path)
    a1.add_argument("out", type=Path)
    a1.add_argument("--profile", default="f16", choices=["f16", "f32"])
    a1.add_argument("--variant", default=None, help="decode variant (default: the plan's first)")
    a1.add_argument("--extra", action="append", default=[], metavar="NAME=FILE",
                    help="another WGSL kernel to capture beside the package's (repeatable)")
    a2 = sub.add_parser("stats", help="the driver's statistics of captured kernels (needs cc and a Vulkan loader)")
    a2.add_argument("spirv", type=Path, help="a folder written by `spirv`")
    a2.add_argument("--include", default=None, help="a folder with vulkan/vulkan.h, if not the system's")
    a2.add_argument("--sms", type=int, default=132, help="the GPU's SMs, for `waves` (default 132: an H100)")
    a2.add_argument("--json", type=Path, default=None)
    a3 = sub.add_parser("_create")
    a3.add_argument("package", type=Path)
    a3.add_argument("listing", type=Path)
    a = ap.parse_args()
    if a.cmd == "_create":
        create_pipelines(a.package, a.listing)
    elif a.cmd == "spirv":
        capture_spirv(a.package, a.out, a.profile, a.variant, a.extra)
    else:
        meta = json.loads((a.spirv / "kernels.json").read_text())
        kernels = meta["kernels"]
        rows = driver_stats([a.spirv / f"{k['kernel']}.spv" for k in kernels], a.include)
        print(f"{meta['package']} ({meta['profile']}, decode variant {meta['variant']})")
        names = list(dict.fromkeys(s for r in rows for s in r.get("stats", {})))
        print(f"{'kernel':40s} {'a step':>6s} {'threads':>7s} {'grid':>16s} " + " ".join(f"{n[:16]:>16s}" for n in names)
              + f" {'wg/SM (regs)':>12s} {'waves':>5s}")
        for k, r in zip(kernels, rows, strict=True):
            t = r.get("threads", 0)
            stats = r.get("stats", {})
            regs = next((v for n, v in stats.items() if "register" in n.lower()), None)
            wgs = waves = None
            if regs and t:
                per_warp = -(-int(regs) // 8) * 8 * 32
                wgs = min(2048 // t, 32, 65536 // (per_warp * -(-t // 32)))
                most = max((g[0] * g[1] * g[2] for g in k["grids"]), default=0)
                waves = -(-most // (wgs * a.sms)) if wgs and most else None
            k.update(threads=t, bindings_built=r.get("bindings"), stats=stats, wg_per_sm=wgs, waves=waves,
                     error=r.get("error"))
            grid = "x".join(map(str, max(k["grids"], key=lambda g: g[0] * g[1] * g[2]))) if k["grids"] else "-"
            print(f"{k['label'][:40]:40s} {k['per_step']:6d} {t:7d} {grid:>16s} "
                  + " ".join(f"{stats.get(n, ''):>16}" for n in names)
                  + f" {wgs if wgs is not None else '':>12} {waves if waves is not None else '':>5}"
                  + (f"  {r['error']}" if r.get("error") else ""))
        if a.json:
            a.json.write_text(json.dumps({**meta, "kernels": kernels}, indent=1))


if __name__ == "__main__":
    main()
