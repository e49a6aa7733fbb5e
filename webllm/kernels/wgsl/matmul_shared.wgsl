// What the prefill matmuls (matmul_tiled.wgsl, matmul_q8.wgsl) share: which weight row a tile stages, and
// the epilogue, one token's sums for 4 consecutive rows into y (store, ADD into the residual stream,
// PAIR: silu(gate) * up, or ROPE: rope_store), with the bias. Expects N_ROWS, N_OUT, ROW0, PAIR, ADD,
// HAS_BIAS, ROPE, y and rope_store.

// staged row s (0..127) of the tile at row n0, clamped to the matrix
fn staged_row(n0: u32, s: u32) -> u32 {
    if (PAIR) {
        let r = min(n0 + s % 64u, N_ROWS - 1u);
        return select(r, r + N_ROWS, s >= 64u);
    }
    return min(n0 + s, N_ROWS - 1u);
}

fn bias_at(i: u32) -> f32 { {{BIAS_LOAD}} }

// The epilogue of one token and 4 consecutive rows: a = W x (+ bias); PAIR: b = the up rows.
fn finish(t0: u32, t: u32, nt: u32, r0: u32, a: vec4<f32>, b: vec4<f32>) {
    if (t >= nt) { return; }
    if (ROPE) {  // rows r0.. are two rope pairs
        for (var c = 0u; c < 4u; c += 2u) {
            let row = r0 + c;
            if (row >= N_ROWS) { continue; }
            var u = a[c];
            var v = a[c + 1u];
            if (HAS_BIAS) {
                u += bias_at(row);
                v += bias_at(row + 1u);
            }
            rope_store(t0 + t, step.past + t0 + t, ROW0 + row, u, v);
        }
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        let row = r0 + c;
        if (row >= N_ROWS) { continue; }
        var u = a[c];
        if (HAS_BIAS) { u += bias_at(row); }
        if (PAIR) {
            var v = b[c];
            if (HAS_BIAS) { v += bias_at(row + N_ROWS); }
            u = u / (1.0 + exp(-u)) * v;
        }
        let o = (t0 + t) * N_OUT + ROW0 + row;
        if (ADD) {
            y[o] = {{YT}}(f32(y[o]) + u);
        } else {
            y[o] = {{YT}}(u);
        }
    }
}
