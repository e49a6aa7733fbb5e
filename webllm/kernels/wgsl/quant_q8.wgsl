// Prefill: a matmul's input x [T, K] as int8 blocks of 32 for matmul_q8.wgsl. Block g of token t
// (inputs 32g .. 32g + 31) becomes x = d q, d = max|x| / 127, q = round(x * 127 / max|x|) in -127..127
// (0 for a block of zeros), eight words of four q bytes, and (d, d * sum q) (the second for weights
// with a min, q4a). NIBBLES: in the order a 4-bit word holds its nibbles after masking
// (weights_q4s.wgsl): word 2j the inputs 8j, 8j+2, 8j+4, 8j+6 (lowest byte first), word 2j+1 the
// inputs 8j+1, 8j+3, 8j+5, 8j+7; else (8-bit weights, q8s) in order, word j the inputs 4j .. 4j+3. So
// the matmul's integer dot products pair each weight with its input without moving bytes.
// Bindings: 0 step; 1 x [T, K] (vec4 of {{XT}}); 2 q8x [T, K/32] blocks (two vec4<u32> each); 3 q8d
// [T, K/32] vec2<f32>.
// Grid: x = ceil(K / 32 / 64), y = ceil(T / 4): a thread a block, 64 blocks of 4 tokens a workgroup.
{{HEADER}}
const K: u32 = {{K}}u;
const KG: u32 = K / 32u;
const NIBBLES: bool = {{NIBBLES}};

@group(0) @binding(1) var<storage, read> x: array<vec4<{{XT}}>>;
@group(0) @binding(2) var<storage, read_write> q8x: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> q8d: array<vec2<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wid.y * 4u + lid / 64u;
    let g = wid.x * 64u + lid % 64u;
    if (t >= step.n_tokens || g >= KG) { return; }
    let b = (t * KG + g) * 8u;  // the block's first vec4 of x
    let v0 = vec4<f32>(x[b]);
    let v1 = vec4<f32>(x[b + 1u]);
    let v2 = vec4<f32>(x[b + 2u]);
    let v3 = vec4<f32>(x[b + 3u]);
    let v4 = vec4<f32>(x[b + 4u]);
    let v5 = vec4<f32>(x[b + 5u]);
    let v6 = vec4<f32>(x[b + 6u]);
    let v7 = vec4<f32>(x[b + 7u]);
    let m4 = max(max(max(abs(v0), abs(v1)), max(abs(v2), abs(v3))), max(max(abs(v4), abs(v5)), max(abs(v6), abs(v7))));
    let amax = max(max(m4.x, m4.y), max(m4.z, m4.w));
    let inv = select(0.0, 127.0 / amax, amax > 0.0);
    // inputs 8j .. 8j+7 are v(2j) and v(2j+1): evens (v.x, v.z of each), then odds (v.y, v.w)
    let q0 = vec4<i32>(round(v0 * inv));
    let q1 = vec4<i32>(round(v1 * inv));
    let q2 = vec4<i32>(round(v2 * inv));
    let q3 = vec4<i32>(round(v3 * inv));
    let q4 = vec4<i32>(round(v4 * inv));
    let q5 = vec4<i32>(round(v5 * inv));
    let q6 = vec4<i32>(round(v6 * inv));
    let q7 = vec4<i32>(round(v7 * inv));
    if (NIBBLES) {
        q8x[2u * (t * KG + g)] = vec4<u32>(pack4xI8(vec4<i32>(q0.x, q0.z, q1.x, q1.z)), pack4xI8(vec4<i32>(q0.y, q0.w, q1.y, q1.w)),
                                           pack4xI8(vec4<i32>(q2.x, q2.z, q3.x, q3.z)), pack4xI8(vec4<i32>(q2.y, q2.w, q3.y, q3.w)));
        q8x[2u * (t * KG + g) + 1u] = vec4<u32>(pack4xI8(vec4<i32>(q4.x, q4.z, q5.x, q5.z)), pack4xI8(vec4<i32>(q4.y, q4.w, q5.y, q5.w)),
                                                pack4xI8(vec4<i32>(q6.x, q6.z, q7.x, q7.z)), pack4xI8(vec4<i32>(q6.y, q6.w, q7.y, q7.w)));
    } else {
        q8x[2u * (t * KG + g)] = vec4<u32>(pack4xI8(q0), pack4xI8(q1), pack4xI8(q2), pack4xI8(q3));
        q8x[2u * (t * KG + g) + 1u] = vec4<u32>(pack4xI8(q4), pack4xI8(q5), pack4xI8(q6), pack4xI8(q7));
    }
    let s4 = ((q0 + q1) + (q2 + q3)) + ((q4 + q5) + (q6 + q7));
    let d = amax / 127.0;
    q8d[t * KG + g] = vec2<f32>(d, d * f32((s4.x + s4.y) + (s4.z + s4.w)));
}
