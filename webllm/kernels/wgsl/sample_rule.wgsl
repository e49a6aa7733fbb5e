// The sampling rule's shared pieces (docs/FORMAT.md, "Sampling"), in both samplers (sample_single.wgsl
// and the split one's prelude, sample.wgsl): the sample flags, the seeded hash, the adjusted logit of
// a token (step 1 of the rule) and an order-preserving u32 key of an f32. Needs the bindings logits,
// token_counts, logit_bias and token_mask.
const F_PENALTIES: u32 = 1u;
const F_BIAS: u32 = 2u;
const F_MASK: u32 = 4u;
const F_LOGPROBS: u32 = 8u;
const EXCLUDED: f32 = -3.0e38;  // an adjusted logit at or below this: the token is not allowed

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

// an order-preserving u32 key of an f32 (a < b  <=>  key(a) < key(b))
fn key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
