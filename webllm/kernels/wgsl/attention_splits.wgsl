// How decode attention cuts the KV range of a step over its workgroups (flash-decoding), shared by the
// attention kernel that writes one partial per split and the o matmul that combines them (gemv.wgsl
// COMBINE_IN), so both derive the same split count from the step's uniform alone (past, kv_splits).
// The step's token at position p attends to [first, p], first = max(0, p + 1 - WINDOW) (WINDOW 0: no
// window): n positions, cut into at most S = min(SPLITS, kv_splits or SPLITS) splits of `span`
// positions, span a multiple of 64 (one split per 64 positions while n <= 64 * S; then the span grows
// with the context). The dispatch gives min(SPLITS, kv_splits, ceil((p + 1) / 64)) workgroups along z
// (`kv_per_z` 64, `max_z` SPLITS): at least `used`; those of splits >= used (a sliding window's, or all
// beyond S for a runtime that ignores kv_splits in the grid) return at once.
const SPL_MAX: u32 = {{SPLITS}}u;
const SPL_UNIT: u32 = {{UNIT}}u;
const SPL_WINDOW: u32 = {{WINDOW}}u;

// (first position, span, used splits) for the decode step of position p. The most splits is SPL_MAX,
// or fewer when the step's uniform asks (step.kv_splits: the runtime's pick, timed at first load).
fn kv_splits(p: u32) -> vec3<u32> {
    let kv = p + 1u;
    var first = 0u;
    if (SPL_WINDOW > 0u && kv > SPL_WINDOW) { first = kv - SPL_WINDOW; }
    let n = kv - first;
    var most = SPL_MAX;
    if (step.kv_splits > 0u) { most = min(SPL_MAX, step.kv_splits); }
    let units = (n + SPL_UNIT - 1u) / SPL_UNIT;
    let span = (units + most - 1u) / most * SPL_UNIT;
    return vec3<u32>(first, span, (n + span - 1u) / span);
}
