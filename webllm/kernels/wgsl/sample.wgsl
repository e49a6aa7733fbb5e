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
//   sample_chunks  [256 workgroups of WG = 32] chunk c: the adjusted logits (penalties, bias, mask)
//                  into `sample_adjusted`; the chunk's greedy choice; for top-k or top-p its CAP
//                  largest allowed tokens (order: key descending, index ascending; a radix select) as
//                  a list in index order, and an upper bound `out` of the keys left out (0: none
//                  left out); for logprobs its largest raw logit and its MAX_TOP largest in order.
//   sample_mass    [256 workgroups of 32] chunk c, with the global m and M from the chunks' results:
//                  the chunk's sum of kept p when no top-k applies (the total mass S and, when θ = 0,
//                  the draw's chunk sum) and its sum of exp(logit - M) for the log-softmax. Greedy
//                  without logprobs: nothing.
//   sample_draw    [1 workgroup of 256] thread c = chunk c: argmax from the chunks' choices (greedy
//                  is done here, no full pass); top-k's key K by a radix select over the lists (the
//                  exact top_k-th largest key, what the rule's bisection finds) when top_k <= CAP,
//                  else over the vocabulary; the top-p bisection; the draw, walking one chunk; the
//                  logprobs, merging the chunks' ordered lists.
// A chunk's sum over the tokens that pass a filter monotone in l (key >= K, p >= min_p, p >= mid) is
// taken over its list alone when the filter rejects `out` (every token left out has a key <= out):
// the same tokens in the same order, so the same f32 sum; otherwise over the whole chunk. So the
// result never depends on the lists; only the time does (flat distributions scan more).
//
// Bindings (all three stages): 0 step; 1 logits [V] f32; 2 token_ids [CHUNK] u32; 3 logit_bias [V] f32;
//   4 token_counts [V] u32; 5 token_mask [ceil(V / 32)] u32; 6 sample_out [2 + 2 * MAX_TOP] u32;
//   7 sample_adjusted [CH * 256] f32, chunk-major transposed: token c * CH + j at [j * 256 + c], so that
//   256 threads each walking their own chunk in index order read adjacent words (coalesced);
//   8 sample_chunks [CHUNK_WORDS] u32 (the layout below).
{{HEADER}}
const V: u32 = {{V}}u;
const CH: u32 = (V + 255u) / 256u;  // vocabulary entries per chunk
const TILES: u32 = (CH + 255u) / 256u;  // 256-token tiles per chunk
const CAP: u32 = {{CAP}}u;  // listed tokens per chunk
const MAX_TOP: u32 = {{MAX_TOP}}u;
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

const WG: u32 = {{WG}}u;  // this stage's workgroup size
const NG: u32 = WG / 16u;  // groups of 16 threads (exclusive_scan)

{{RULE}}
var<workgroup> best_max: array<atomic<u32>, 2>;  // workgroup_best: two sets, used in turn
var<workgroup> best_min: array<atomic<u32>, 2>;
var<workgroup> scan: array<u32, 256>;
var<workgroup> groups: array<u32, 16>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> picked: array<u32, 2>;  // a radix select's digit and the count above it

var<private> best_value: f32;  // the value of workgroup_best's winner
var<private> best_turn: u32;   // which set of best_max / best_min the next workgroup_best uses
var<private> scan_total: u32;  // the total of the last exclusive_scan

// where token v's adjusted logit lies in sample_adjusted
fn adj_at(v: u32) -> u32 {
    let c = v / CH;
    return (v - c * CH) * 256u + c;
}

// an order-preserving u32 key of an f32 back to the f32 (key: sample_rule.wgsl)
fn unkey(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// Clears the workgroup atomics: WGSL zero-initializes workgroup memory, but lavapipe (Mesa 22.3)
// was seen to hand a workgroup the atomics its predecessor left. Every stage calls it first.
fn init_workgroup(lid: u32) {
    for (var b = lid; b < 256u; b += WG) { atomicStore(&hist[b], 0u); }
    if (lid < 2u) {
        atomicStore(&best_max[lid], 0u);
        atomicStore(&best_min[lid], 0u);
    }
    workgroupBarrier();
}

// the workgroup's best (largest value, lowest index among equals) of each thread's candidate; its
// value is left in best_value (all threads must call it). By workgroup atomics on the order-preserving
// key (with -0 as +0: they are equal values), then on the index: 2 barriers instead of a tree's 9.
// The two sets are used in turn: a set is cleared during the next call, once every thread has read it.
fn workgroup_best(lid: u32, bv: f32, bi: u32) -> u32 {
    let turn = best_turn;
    best_turn = 1u - turn;
    let k = key(select(bv, 0.0, bv == 0.0));
    atomicMax(&best_max[turn], k);
    workgroupBarrier();
    if (lid == 0u) {
        atomicStore(&best_max[1u - turn], 0u);
        atomicStore(&best_min[1u - turn], 0u);
    }
    let top = atomicLoad(&best_max[turn]);
    if (k == top) { atomicMax(&best_min[turn], ~bi); }  // the largest ~index: the lowest index
    workgroupBarrier();
    best_value = unkey(top);
    return ~atomicLoad(&best_min[turn]);
}

// the sum of `x` over the threads before this one (all threads must call it); the workgroup's total
// is left in scan_total. Two levels: sums of groups of 16 threads, then within the group.
fn exclusive_scan(lid: u32, x: u32) -> u32 {
    scan[lid] = x;
    workgroupBarrier();
    if (lid < NG) {
        var s = 0u;
        for (var i = 0u; i < 16u; i++) { s += scan[lid * 16u + i]; }
        groups[lid] = s;
    }
    workgroupBarrier();
    let g = lid / 16u;
    var before = 0u;
    var total = 0u;
    for (var i = 0u; i < NG; i++) {
        if (i < g) { before += groups[i]; }
        total += groups[i];
    }
    for (var i = g * 16u; i < lid; i++) { before += scan[i]; }
    scan_total = total;
    workgroupBarrier();
    return before;
}

// One round of a radix select for the `need`-th largest key: after the caller has counted the keys
// that match the digits picked so far into hist by their digit at `shift` (and passed a barrier),
// picks the digit d whose keys hold the need-th largest: picked = (d, how many matching keys have a
// larger digit), or (NONE, 0) when fewer than `need` keys matched. All threads must call it; hist
// is clear again when it returns.
fn radix_pick(lid: u32, need: u32) {
    if (lid < 16u) {
        var s = 0u;
        for (var i = 0u; i < 16u; i++) { s += atomicLoad(&hist[lid * 16u + i]); }
        groups[lid] = s;
    }
    workgroupBarrier();
    if (lid == 0u) {
        picked[0] = NONE;
        picked[1] = 0u;
        var above = 0u;
        for (var g = 16u; g > 0u; g--) {
            if (above + groups[g - 1u] >= need) {  // the digit is in this group: find it bin by bin
                for (var b = g * 16u; b > (g - 1u) * 16u; b--) {
                    let h = atomicLoad(&hist[b - 1u]);
                    if (above + h >= need) {
                        picked[0] = b - 1u;
                        picked[1] = above;
                        break;
                    }
                    above += h;
                }
                break;
            }
            above += groups[g - 1u];
        }
    }
    workgroupBarrier();
    for (var b = lid; b < 256u; b += WG) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
}

// the best of the 256 chunks' candidates stored at [v_at + c] (value) and [i_at + c] (index)
fn chunks_best(lid: u32, v_at: u32, i_at: u32) -> u32 {
    var bv = -3.4e38;
    var bi = NONE;
    for (var c = lid; c < 256u; c += WG) {
        let v = bitcast<f32>(chunks[v_at + c]);
        let i = chunks[i_at + c];
        if (v > bv || (v == bv && i < bi)) { bv = v; bi = i; }
    }
    return workgroup_best(lid, bv, bi);
}

// the mask of the digits above `shift` (those already picked)
fn high_mask(shift: u32) -> u32 {
    return ~((2u << (shift + 7u)) - 1u);
}
