"""Integer dot products (WGSL dot4I8Packed) against f32 FMAs on this adapter, in T multiply-adds/s:
register-only (8, 16, 32 independent accumulators a thread), and an 8 x 8 register tile fed from
workgroup memory, the multiply of a tiled matmul (f32 FMAs; dot4I8Packed; dot4I8Packed with the
per-block float step of matmul_q8.wgsl, every 8 words). The figures behind the int8 prefill matmul
(docs/PERFORMANCE.md, "Prefill with integer dot products").

    python benchmarks/int8_probe.py
"""

from __future__ import annotations

import time

import wgpu

from webllm.runtime.device import adapter_name, create_shader_module, request_device

GROUPS = 132 * 8  # workgroups of 256 threads
TM = TN = 8  # the tile's outputs a thread: tokens x rows
XS = ["x0.x", "x0.y", "x0.z", "x0.w", "x1.x", "x1.y", "x1.z", "x1.w"]
WS = ["w0.x", "w0.y", "w0.z", "w0.w", "w1.x", "w1.y", "w1.z", "w1.w"]


def register_only(n_acc: int, iters: int) -> str:
    acc = "\n".join(f"    var a{i} = i32(lid + {i}u);" for i in range(n_acc))
    body = "\n".join(f"        a{i} = dot4I8Packed(m ^ {i}u, c) + a{i};" for i in range(n_acc))
    red = " + ".join(f"a{i}" for i in range(n_acc))
    return f"""
@group(0) @binding(0) var<storage, read_write> out: array<i32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{
    var m = lid * 0x01010101u;
    let c = 0x03050709u ^ lid;
{acc}
    for (var k = 0u; k < {iters}u; k++) {{
        m = m + 0x01000001u;
{body}
    }}
    out[gid.x] = {red};
}}
"""


def tile(kind: str, iters: int, fixup: bool = False) -> tuple[str, int]:
    """(source, multiply-adds a thread a step) of the 8 x 8 tile: kind "f32" (an FMA a product) or "i8"
    (dot4I8Packed: 4 products a word)."""
    t = "f32" if kind == "f32" else "u32"
    fill = "f32(lid)" if kind == "f32" else "lid * 0x01010101u"
    decl = [f"var<workgroup> sx: array<vec4<{t}>, 1024>;", f"var<workgroup> sw: array<vec4<{t}>, 1024>;"]
    init = ["    for (var i = 0u; i < 4u; i++) {",
            f"        sx[lid + 256u * i] = vec4<{t}>({fill});",
            f"        sw[lid + 256u * i] = vec4<{t}>({fill});",
            "    }"]
    step = ["        let x0 = sx[(k * 16u + ty) & 1023u];", "        let x1 = sx[(k * 16u + ty + 8u) & 1023u];",
            "        let w0 = sw[(k * 32u + tx) & 1023u];", "        let w1 = sw[(k * 32u + tx + 16u) & 1023u];"]
    if kind == "f32":
        accs = [f"    var a{i}_{j} = vec4<f32>();" for i in range(TM) for j in range(2)]
        step += [f"        a{i}_{j} = fma(vec4<f32>({XS[i]}), w{j}, a{i}_{j});" for i in range(TM) for j in range(2)]
        total = " + ".join(f"a{i}_{j}" for i in range(TM) for j in range(2))
        store = f"    out[gid.x] = i32(dot({total}, vec4<f32>(1.0)));"
        macs = TM * TN
    else:
        accs = [f"    var a{i}_{j} = 0i;" for i in range(TM) for j in range(TN)]
        step += [f"        a{i}_{j} = dot4I8Packed({XS[i]}, {WS[j]}) + a{i}_{j};" for i in range(TM) for j in range(TN)]
        total = " + ".join(f"a{i}_{j}" for i in range(TM) for j in range(TN))
        store = f"    out[gid.x] = {total};"
        macs = 4 * TM * TN
        if fixup:  # every 8 words (a block of 32 k): sum * d_x * d_w into f32 totals
            decl.append("var<workgroup> sd: array<vec4<f32>, 256>;")
            init.insert(0, "    sd[lid] = vec4<f32>(f32(lid));")
            accs += [f"    var f{i}_{j} = 0.0;" for i in range(TM) for j in range(TN)]
            step.append("        if ((k & 7u) == 7u) {")
            step.append("            let dx = sd[(k + ty) & 255u];")
            step.append("            let dw = sd[(k + tx) & 255u];")
            step += [f"            f{i}_{j} = fma(f32(a{i}_{j}), dx[{i % 4}] * dw[{j % 4}], f{i}_{j});\n"
                     f"            a{i}_{j} = 0i;" for i in range(TM) for j in range(TN)]
            step.append("        }")
            total = " + ".join(f"f{i}_{j}" for i in range(TM) for j in range(TN))
            store = f"    out[gid.x] = i32({total});"
    body = "\n".join(step)
    source = f"""
@group(0) @binding(0) var<storage, read_write> out: array<i32>;
{chr(10).join(decl)}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{
    let tx = lid % 16u;
    let ty = lid / 16u;
{chr(10).join(init)}
    workgroupBarrier();
{chr(10).join(accs)}
    for (var k = 0u; k < {iters}u; k++) {{
{body}
    }}
{store}
}}
"""
    return source, macs


def main() -> None:
    adapter, dev = request_device()
    print(adapter_name(adapter), flush=True)
    out = dev.create_buffer(size=GROUPS * 256 * 4, usage=wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_SRC)

    def bench(name: str, code: str, macs_per_iter: int, iters: int) -> None:
        pipe = dev.create_compute_pipeline(layout="auto", compute={"module": create_shader_module(dev, code),
                                                                   "entry_point": "main"})
        bg = dev.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=[{"binding": 0, "resource": {"buffer": out}}])

        def run(reps: int) -> None:
            enc = dev.create_command_encoder()
            cp = enc.begin_compute_pass()
            cp.set_pipeline(pipe)
            cp.set_bind_group(0, bg)
            for _ in range(reps):
                cp.dispatch_workgroups(GROUPS)
            cp.end()
            dev.queue.submit([enc.finish()])
            dev.queue.read_buffer(out, 0, 16)

        run(3)  # warm
        t0 = time.perf_counter()
        run(10)
        dt = (time.perf_counter() - t0) / 10
        print(f"{name:32s} {dt * 1e3:7.2f} ms {GROUPS * 256 * iters * macs_per_iter / dt / 1e12:6.1f} T multiply-adds/s",
              flush=True)

    for n in (8, 16, 32):
        bench(f"dot4I8Packed, {n} accumulators", register_only(n, 2048), 4 * n, 2048)
    bench("8x8 tile, f32 FMA", *tile("f32", 1024), 1024)
    bench("8x8 tile, dot4I8Packed", *tile("i8", 1024), 1024)
    bench("8x8 tile, dot4I8Packed + fixup", *tile("i8", 1024, fixup=True), 1024)


if __name__ == "__main__":
    main()
