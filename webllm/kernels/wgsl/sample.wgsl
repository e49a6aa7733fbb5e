// Sampling on the GPU, split over three dispatches (the prelude they share; each stage's file adds
// its entry point): token_ids[0] = the next token, which stays on the GPU as the next decode step's
// input; sample_out = [token, logprob, top ids..., top logprobs...] for the CPU to read.
//
// The rule is docs/FORMAT.md "Sampling", stated directly (and slowly, by one workgroup) in
// sample_single.wgsl; these kernels pick the same token and write the same sample_out bit for bit.
// Its sums are fixed: the vocabulary is cut into 256 contiguous chunks of CH = ceil(V / 256) tokens;
// a chunk's sum is taken in index order, then the 256 chunk sums by the tree red[i] += red[i + s]
// (s = 128, ..., 1), except the kept mass of the draw: the chunk sums in order. So here too a chunk is
// the unit: one workgroup per chunk in the first two stages, one thread per chunk in the last.
//
//   sample_chunks  [256 workgroups] chunk c: the adjusted logits (penalties, bias, mask) into
//                  `sample_adjusted`; the chunk's greedy choice; with temperature > 0 its CAP
//                  largest allowed tokens (order: key descending, index ascending) as a list in index
//                  order, and an upper bound `out` of the keys left out (0: none left out); with
//                  logprobs its largest raw logit and its MAX_TOP largest in order.
//   sample_mass    [256 workgroups] chunk c, with the global m and M from the chunks' stats: the
//                  chunk's sum of kept p when no top-k applies (the total mass S and, when θ = 0,
//                  the draw's chunk sum) and its sum of exp(logit - M) for the log-softmax.
//   sample_draw    [1 workgroup] thread c = chunk c: argmax from the chunks' choices (greedy is done
//                  here, no full pass); top-k's key K by a radix select over the lists (the exact
//                  top_k-th largest key, what the rule's bisection finds) when top_k <= CAP; the
//                  top-p bisection; the draw; the logprobs from the chunks' ordered lists.
// A chunk's sum over the tokens that pass a filter monotone in l (key >= K, p >= min_p, p >= mid) is
// taken over its list alone when the filter rejects `out` (every token left out has a key <= out):
// the same tokens in the same order, so the same f32 sum; otherwise over the whole chunk. So the
// result never depends on the lists; only the time does (flat distributions scan more).
//
// Bindings (all three stages): 0 step; 1 logits [V] f32; 2 token_ids [CHUNK] u32; 3 logit_bias [V] f32;
//   4 token_counts [V] u32; 5 token_mask [ceil(V / 32)] u32; 6 sample_out [2 + 2 * MAX_TOP] u32;
//   7 sample_adjusted [V] f32; 8 sample_chunks [CHUNK_WORDS] u32 (the layout below).
{{HEADER}}
const V: u32 = {{V}}u;
const CH: u32 = (V + 255u) / 256u;  // vocabulary entries per chunk
const TILES: u32 = (CH + 255u) / 256u;  // 256-token tiles per chunk
const CAP: u32 = {{CAP}}u;  // listed tokens per chunk
const MAX_TOP: u32 = {{MAX_TOP}}u;
const F_PENALTIES: u32 = 1u;
const F_BIAS: u32 = 2u;
const F_MASK: u32 = 4u;
const F_LOGPROBS: u32 = 8u;
const EXCLUDED: f32 = -3.0e38;  // an adjusted logit at or below this: the token is not allowed
const NONE: u32 = 0xffffffffu;

// sample_chunks: word offsets of its sections; per-chunk values are [section + c], list entry j of
// chunk c is [section + j * 256 + c] (consecutive chunks adjacent: the last stage's reads coalesce)
const ST_BEST_V: u32 = 0u;      // f32: the chunk's largest adjusted logit (-3.4e38: none allowed)
const ST_BEST_I: u32 = 256u;    // its lowest index (NONE: none)
const ST_RAW_V: u32 = 512u;     // f32: the chunk's largest raw logit (logprobs)
const ST_RAW_I: u32 = 768u;     // its lowest index
const ST_LEN: u32 = 1024u;      // tokens in the chunk's list
const ST_OUT: u32 = 1280u;      // keys left out of the list are <= this; 0: the list holds every allowed token
const ST_Z: u32 = 1536u;        // f32: sum of kept p over the chunk (no top-k), in index order
const ST_ZRAW: u32 = 1792u;     // f32: sum of exp(logit - M) over the chunk, in index order
const LIST_I: u32 = 2048u;      // [CAP][256] token ids, in index order
const LIST_L: u32 = LIST_I + CAP * 256u;    // [CAP][256] their adjusted logits (f32)
const TOP_I: u32 = LIST_L + CAP * 256u;     // [MAX_TOP][256] the chunk's largest raw logits, in order
const TOP_V: u32 = TOP_I + MAX_TOP * 256u;  // [MAX_TOP][256] their values (f32)

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> token_ids: array<u32>;
@group(0) @binding(3) var<storage, read> logit_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> token_counts: array<u32>;
@group(0) @binding(5) var<storage, read> token_mask: array<u32>;
@group(0) @binding(6) var<storage, read_write> sample_out: array<u32>;
@group(0) @binding(7) var<storage, read_write> sample_adjusted: array<f32>;
@group(0) @binding(8) var<storage, read_write> chunks: array<u32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;
var<workgroup> red: array<f32, 256>;
var<workgroup> scan: array<u32, 256>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> picked: array<u32, 2>;  // a radix select's digit and the count above it

var<private> best_value: f32;  // the value of workgroup_best's winner
var<private> scan_total: u32;  // the total of the last exclusive_scan

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

// the adjusted logit of token v (step 1), -3.4e38 when the mask forbids it
fn adjusted(v: u32) -> f32 {
    var l = logits[v];
    let flags = step.sample_flags;
    if ((flags & F_PENALTIES) != 0u) {
        let raw = token_counts[v];
        let c = raw & 0x7fffffffu;
        if (raw != 0u && step.repetition_penalty != 1.0) {
            if (l > 0.0) { l = l / step.repetition_penalty; } else { l = l * step.repetition_penalty; }
        }
        l -= step.frequency_penalty * f32(c) + select(0.0, step.presence_penalty, c > 0u);
    }
    if ((flags & F_BIAS) != 0u) { l += logit_bias[v]; }
    if ((flags & F_MASK) != 0u && ((token_mask[v >> 5u] >> (v & 31u)) & 1u) == 0u) { l = -3.4e38; }
    return l;
}

// an order-preserving u32 key of an f32 (a < b  <=>  key(a) < key(b)), and back
fn key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn unkey(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// sum over the workgroup of each thread's `v`, by the rule's tree (all threads must call it)
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// the workgroup's best (largest value, lowest index among equals) of each thread's candidate; its
// value is left in best_value (all threads must call it)
fn workgroup_best(lid: u32, bv: f32, bi: u32) -> u32 {
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let ov = best_v[lid + s];
            let oi = best_i[lid + s];
            if (ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    let i = best_i[0];
    best_value = best_v[0];
    workgroupBarrier();
    return i;
}

// the sum of `x` over the threads before this one; the workgroup's total is left in scan_total
fn exclusive_scan(lid: u32, x: u32) -> u32 {
    scan[lid] = x;
    workgroupBarrier();
    for (var s = 1u; s < 256u; s <<= 1u) {
        var add = 0u;
        if (lid >= s) { add = scan[lid - s]; }
        workgroupBarrier();
        scan[lid] += add;
        workgroupBarrier();
    }
    let inclusive = scan[lid];
    scan_total = scan[255];
    workgroupBarrier();
    return inclusive - x;
}

// One round of a radix select for the `need`-th largest key: after the caller has counted the keys
// that match the digits picked so far into hist by their digit at `shift`, picks the digit d whose
// keys hold the need-th largest: picked = (d, how many matching keys have a larger digit), or
// (NONE, 0) when fewer than `need` keys matched. All threads must call it; hist is cleared after.
fn radix_pick(lid: u32, need: u32) {
    if (lid == 0u) { picked[0] = NONE; picked[1] = 0u; }
    scan[lid] = atomicLoad(&hist[lid]);
    workgroupBarrier();
    // suffix sums: scan[b] = keys with digit >= b
    for (var s = 1u; s < 256u; s <<= 1u) {
        var add = 0u;
        if (lid + s < 256u) { add = scan[lid + s]; }
        workgroupBarrier();
        scan[lid] += add;
        workgroupBarrier();
    }
    var above = 0u;
    if (lid < 255u) { above = scan[lid + 1u]; }
    if (scan[lid] >= need && above < need) {
        picked[0] = lid;
        picked[1] = above;
    }
    atomicStore(&hist[lid], 0u);
    workgroupBarrier();
}

// the mask of the digits above `shift` (those already picked)
fn high_mask(shift: u32) -> u32 {
    return ~((2u << (shift + 7u)) - 1u);
}
