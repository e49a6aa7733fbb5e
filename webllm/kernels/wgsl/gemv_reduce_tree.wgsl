// gemv.wgsl's reduction without subgroups: the L partial sums of each row set meet in workgroup memory
// by a tree (log2(L) steps, a barrier after each); the set's totals end in its first slot.
fn reduce_row_sets(lid: u32, a: vec4<f32>, b: vec4<f32>, ss: f32) {
    let lane = lid % L;
    red_a[lid] = a;
    if (PAIR) { red_b[lid] = b; }
    if (NORM || NORM_IN) { red_s[lid] = ss; }
    workgroupBarrier();
    for (var s = L / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red_a[lid] += red_a[lid + s];
            if (PAIR) { red_b[lid] += red_b[lid + s]; }
            if (NORM || NORM_IN) { red_s[lid] += red_s[lid + s]; }
        }
        workgroupBarrier();
    }
}

// y value of the workgroup's row j after the reduction: (W·x, W_up·x)
fn row_sum(j: u32) -> vec2<f32> {
    let slot = (j / R) * L;
    var v = vec2<f32>(red_a[slot][j % R], red_b[slot][j % R]);
    if (NORM || NORM_IN) { v *= inverseSqrt(red_s[slot] / f32(K) + EPS); }
    return v;
}
