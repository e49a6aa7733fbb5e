// How decode attention cuts the KV range of a step over its workgroups (flash-decoding), shared by the
// attention kernel that writes one partial per split and the o matmul that combines them (gemv.wgsl
// COMBINE_IN), so both derive the same split count from step.past alone.
// The step's token at position p attends to [first, p], first = max(0, p + 1 - WINDOW) (WINDOW 0: no
// window): n positions, cut into at most SPLITS splits of `span` positions, span a multiple of 64 (one
// split per 64 positions while n <= 64 * SPLITS; then the span grows with the context). The dispatch
// gives min(SPLITS, ceil((p + 1) / 64)) workgroups along z (`kv_per_z` 64, `max_z` SPLITS): at least
// `used`; those of splits >= used (a sliding window's) return at once.
const SPL_MAX: u32 = {{SPLITS}}u;
const SPL_UNIT: u32 = {{UNIT}}u;
const SPL_WINDOW: u32 = {{WINDOW}}u;

// (first position, span, used splits) for the decode step of position p
fn kv_splits(p: u32) -> vec3<u32> {
    let kv = p + 1u;
    var first = 0u;
    if (SPL_WINDOW > 0u && kv > SPL_WINDOW) { first = kv - SPL_WINDOW; }
    let n = kv - first;
    let units = (n + SPL_UNIT - 1u) / SPL_UNIT;
    let span = (units + SPL_MAX - 1u) / SPL_MAX * SPL_UNIT;
    return vec3<u32>(first, span, (n + span - 1u) / span);
}
