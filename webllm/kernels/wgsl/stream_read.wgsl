// Streaming read, to measure an adapter's memory bandwidth (webllm bench, benchmarks/gemv_bench.py):
//   out[wg] = xor of the words of src this workgroup read (written only if it equals MAGIC, which
//   it never does for the zero-filled buffer the bench binds, so the reads cannot be optimized away
//   and almost nothing is written).
// Each of the 256 threads of a workgroup reads PER_THREAD vec4<u32>, strided by the grid's width so
// that a warp reads consecutive 16-byte words. No uniform: the grid is fixed by the buffer size.
// Bindings: 0 src [N] vec4<u32> (read); 1 out [grid] u32.
// Grid: x = N / (256 * PER_THREAD).
const PER_THREAD: u32 = {{PER_THREAD}}u;
const MAGIC: u32 = 0x9e3779b9u;

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let stride = nwg.x * 256u;
    var acc = vec4<u32>(0u);
    var i = wid.x * 256u + lid;
    for (var r = 0u; r < PER_THREAD; r++) {
        acc ^= src[i];
        i += stride;
    }
    let v = acc.x ^ acc.y ^ acc.z ^ acc.w;
    if (v == MAGIC) { out[wid.x] = v; }
}
