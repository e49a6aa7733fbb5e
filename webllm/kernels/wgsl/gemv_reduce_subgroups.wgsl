// gemv.wgsl's reduction with subgroup operations (the `subgroups` feature), right for any power-of-two
// subgroup size P (4 on SwiftShader, 8 on lavapipe, 32 on NVIDIA, 32 or 64 on AMD, 8 to 32 on Intel).
// A row set is L consecutive invocations starting at a multiple of L, and a subgroup P consecutive
// invocations starting at a multiple of P (local_invocation_index = the subgroup's first + its
// subgroup_invocation_id: WGSL does not promise this, but every implementation we know lays out a
// one-dimensional workgroup so). Hence:
// - P <= L: each subgroup lies within one row set. subgroupAdd sums it and its first invocation leaves
//   one partial in workgroup memory; a set has L / P of them, which row_sum adds.
// - P > L: a subgroup holds several whole row sets. A butterfly over the lane bits below L
//   (subgroupShuffleXor with masks 1, 2, .., L / 2) sums each set without crossing into the next, and
//   the set's first invocation leaves the total.
// One barrier in all, against 1 + log2(L) for the tree.
// P is the `subgroup_size` built-in, known only when the kernel runs. Where it is P_FOLD (32: NVIDIA,
// Apple, AMD in wave32) the same code runs with P a constant, which the shader compiler folds (the
// modulo, the loop over a row set's partials): the branch is uniform, and native decode on an H100
// gains 0.6-1.1% (docs/PERFORMANCE.md; Dawn's compiler gains nothing, it already ran as fast).
const P_FOLD: u32 = 32u;
var<private> red_stride: u32;  // slots between a row set's partials: min(P, L)

fn reduce_row_sets(lid: u32, a0: vec4<f32>, b0: vec4<f32>, ss0: f32, sg_size: u32) {
    if (sg_size == P_FOLD) {
        reduce_subgroups(lid, a0, b0, ss0, P_FOLD);
    } else {
        reduce_subgroups(lid, a0, b0, ss0, sg_size);
    }
    workgroupBarrier();
}

fn reduce_subgroups(lid: u32, a0: vec4<f32>, b0: vec4<f32>, ss0: f32, p: u32) {
    var a = a0;
    var b = b0;
    var ss = ss0;
    if (p <= L) {
        a = subgroupAdd(a);
        if (PAIR) { b = subgroupAdd(b); }
        if (NORM || NORM_IN) { ss = subgroupAdd(ss); }
    } else {
        for (var m = 1u; m < L; m <<= 1u) {
            a += subgroupShuffleXor(a, m);
            if (PAIR) { b += subgroupShuffleXor(b, m); }
            if (NORM || NORM_IN) { ss += subgroupShuffleXor(ss, m); }
        }
    }
    red_stride = min(p, L);
    if (lid % min(p, L) == 0u) {
        red_a[lid] = a;
        if (PAIR) { red_b[lid] = b; }
        if (NORM || NORM_IN) { red_s[lid] = ss; }
    }
}

// y value of the workgroup's row j after the reduction: (W·x, W_up·x)
fn row_sum(j: u32) -> vec2<f32> {
    if (red_stride == min(P_FOLD, L)) { return row_sum_by(j, min(P_FOLD, L)); }
    return row_sum_by(j, red_stride);
}

fn row_sum_by(j: u32, stride: u32) -> vec2<f32> {
    let slot = (j / R) * L;
    var v = vec2<f32>(0.0);
    var ss = 0.0;
    for (var i = slot; i < slot + L; i += stride) {
        v += vec2<f32>(red_a[i][j % R], red_b[i][j % R]);
        ss += red_s[i];
    }
    if (NORM || NORM_IN) { v *= inverseSqrt(ss / f32(K) + EPS); }
    return v;
}
