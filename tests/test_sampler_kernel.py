"""The sampler alone, on fixed logits, against a numpy statement of the rule in docs/FORMAT.md
("Sampling"): which tokens each filter keeps (top-k, min-p, top-p, mask), what the penalties and the
bias do, that seeded draws follow the kept probabilities, that logprobs are the log-softmax of the raw
logits, and that the penalty counts advance. And that the split sampler the plans run (sample_chunks,
sample_mass, sample_draw) writes exactly what the rule's one-workgroup statement (sample_single)
writes on the same device: the same token and the same sample_out bits, for every filter, across
chunk boundaries, on vocabularies that are not a multiple of the chunk."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from webllm.kernels import MAX_TOP_LOGPROBS, SAMPLE_CAP, Profile, sample, sample_scratch_buffers, sample_single, uniform_table

V = 1000
FLAGS = {"penalties": 1, "bias": 2, "mask": 4, "logprobs": 8}
MAX_TOP = MAX_TOP_LOGPROBS


class Sampler:
    """The split sampler (or, single=True, the one-workgroup statement of the rule) with its own
    buffers on the session's device."""

    def __init__(self, device, vocab: int = V, single: bool = False):
        import wgpu

        self.device, self.V = device, vocab
        stages = [(sample_single(Profile("f32"), vocab=vocab), [1, 1, 1])] if single else sample(Profile("f32"), vocab=vocab)
        self.table = uniform_table()
        BU = wgpu.BufferUsage
        sizes = {"uniform": self.table["size"], "logits": vocab * 4, "token_ids": 16, "logit_bias": vocab * 4,
                 "token_counts": vocab * 4, "token_mask": (vocab + 31) // 32 * 4, "sample_out": (2 + 2 * MAX_TOP) * 4,
                 **sample_scratch_buffers(vocab)}
        names = ["uniform", "logits", "token_ids", "logit_bias", "token_counts", "token_mask", "sample_out",
                 "sample_adjusted", "sample_chunks"]
        self.buf = {n: device.create_buffer(size=(s + 15) // 16 * 16, usage=(BU.UNIFORM if n == "uniform" else BU.STORAGE)
                                            | BU.COPY_DST | BU.COPY_SRC) for n, s in sizes.items()}
        btype = {"uniform": wgpu.BufferBindingType.uniform, "read-only-storage": wgpu.BufferBindingType.read_only_storage,
                 "storage": wgpu.BufferBindingType.storage}
        self.stages = []
        for k, grid in stages:
            bgl = device.create_bind_group_layout(entries=[
                {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": btype[t]}}
                for i, t in enumerate(k.bindings)])
            pipeline = device.create_compute_pipeline(
                layout=device.create_pipeline_layout(bind_group_layouts=[bgl]),
                compute={"module": device.create_shader_module(code=k.source), "entry_point": "main"})
            bg = device.create_bind_group(layout=bgl, entries=[
                {"binding": i, "resource": {"buffer": self.buf[n], "offset": 0, "size": self.buf[n].size}}
                for i, n in enumerate(names[:len(k.bindings)])])
            self.stages.append((pipeline, bg, grid))

    def write(self, name: str, arr: np.ndarray) -> None:
        self.device.queue.write_buffer(self.buf[name], 0, np.ascontiguousarray(arr).tobytes())

    def run(self, logits, **fields):
        values = {f["name"]: f["default"] for f in self.table["fields"]} | {"emit": 1} | fields
        data = bytearray(self.table["size"])
        for f in self.table["fields"]:
            struct.pack_into("<I" if f["type"] == "u32" else "<f", data, f["offset"],
                             int(values[f["name"]]) if f["type"] == "u32" else float(values[f["name"]]))
        self.device.queue.write_buffer(self.buf["uniform"], 0, data)
        self.write("logits", np.asarray(logits, np.float32))
        enc = self.device.create_command_encoder()
        cp = enc.begin_compute_pass()
        for pipeline, bg, grid in self.stages:
            cp.set_pipeline(pipeline)
            cp.set_bind_group(0, bg)
            cp.dispatch_workgroups(*grid)
        cp.end()
        self.device.queue.submit([enc.finish()])
        out = np.frombuffer(self.device.queue.read_buffer(self.buf["sample_out"]), np.uint32)
        return int(out[0]), out

    def counts(self) -> np.ndarray:
        return np.frombuffer(self.device.queue.read_buffer(self.buf["token_counts"]), np.uint32)[:self.V].copy()


@pytest.fixture(scope="module")
def sampler(gpu):
    """The statement of the rule (what the plans run at this vocabulary): the distribution tests
    draw hundreds of times, and the split sampler is held to its output bit for bit below."""
    return Sampler(gpu[1], single=True)


@pytest.fixture(scope="module")
def logits():
    return (np.random.default_rng(5).standard_normal(V) * 2.5).astype(np.float32)


def adjusted(logits, counts=None, bias=None, rep=1.0, freq=0.0, pres=0.0, mask=None):
    """Step 1 of the rule in float64; masked tokens are -inf."""
    l = logits.astype(np.float64)
    if counts is not None:
        c = (counts & 0x7FFFFFFF).astype(np.float64)
        seen = counts != 0
        if rep != 1:
            l = np.where(seen, np.where(l > 0, l / rep, l * rep), l)
        l = l - freq * c - pres * (c > 0)
    if bias is not None:
        l = l + bias
    if mask is not None:
        l = np.where(mask, l, -np.inf)
    return l


def kept_probs(l, temperature=1.0, top_k=0, min_p=0.0, top_p=1.0):
    """The normalized distribution of step 3 (float64); ties at each threshold are kept."""
    p = np.exp((l - l.max()) / temperature)
    keep = np.isfinite(l)
    if 0 < top_k < keep.sum():
        keep &= l >= np.sort(l[keep])[-top_k]
    keep &= p >= min_p
    if top_p < 1:
        q = np.sort(p[keep])[::-1]
        j = int(np.searchsorted(np.cumsum(q), top_p * q.sum()))
        keep &= p >= q[min(j, q.size - 1)] * (1 - 1e-6)
    p = np.where(keep, p, 0)
    return p / p.sum()


def bits(mask: np.ndarray) -> np.ndarray:
    words = np.zeros((mask.size + 31) // 32, np.uint32)
    for v in np.flatnonzero(mask):
        words[v // 32] |= np.uint32(1 << (v % 32))
    return words


@pytest.mark.parametrize("params", [
    dict(temperature=1.0, top_k=5),
    dict(temperature=0.8, min_p=0.1),
    dict(temperature=1.0, top_p=0.6),
    dict(temperature=1.3, top_k=40, min_p=0.02, top_p=0.9),
])
def test_draws_stay_in_the_kept_set_and_follow_its_probabilities(sampler, logits, params):
    """400 seeded draws: every one is a kept token, and the likeliest kept tokens appear within 4.5
    standard deviations of their probability (fixed seeds: deterministic)."""
    p = kept_probs(logits.astype(np.float64), **params)
    draws = [sampler.run(logits, seed=s, counter=3, **params)[0] for s in range(400)]
    assert all(p[d] > 0 for d in draws), sorted({d for d in draws if p[d] == 0})
    freq = np.bincount(draws, minlength=V) / len(draws)
    for v in np.argsort(-p)[:5]:
        sigma = np.sqrt(p[v] * (1 - p[v]) / len(draws))
        assert abs(freq[v] - p[v]) < 4.5 * sigma + 1e-3, (v, freq[v], p[v])
    assert sampler.run(logits, seed=7, **params)[0] == sampler.run(logits, seed=7, **params)[0]


def test_penalties_bias_and_mask_move_the_greedy_choice(sampler, logits):
    rng = np.random.default_rng(1)
    counts = np.zeros(V, np.uint32)
    counts[rng.choice(V, 60, replace=False)] = 0x80000000  # in the prompt
    counts[np.argsort(-logits)[:3]] = [2, 0x80000001, 5]  # the three likeliest were generated already
    bias = np.zeros(V, np.float32)
    bias[rng.choice(V, 20, replace=False)] = rng.uniform(-5, 5, 20).astype(np.float32)
    mask = rng.random(V) < 0.5
    sampler.write("logit_bias", bias)
    sampler.write("token_mask", bits(mask))
    for rep, freq, pres, flags in [(1.3, 0, 0, "penalties"), (1, 0.7, 0, "penalties"), (1, 0, 1.5, "penalties"),
                                   (1, 0, 0, "bias"), (1, 0, 0, "mask"), (1.2, 0.4, 0.3, "penalties bias mask")]:
        sampler.write("token_counts", counts)
        on = flags.split()
        ref = adjusted(logits, counts if "penalties" in on else None, bias if "bias" in on else None, rep, freq, pres,
                       mask if "mask" in on else None)
        got, _ = sampler.run(logits, temperature=0, repetition_penalty=rep, frequency_penalty=freq,
                             presence_penalty=pres, sample_flags=sum(FLAGS[f] for f in on))
        assert got == int(np.argmax(ref)), (flags, got, int(np.argmax(ref)))
        if "penalties" in on:  # the chosen token now counts once more as generated
            expect = counts.copy()
            expect[got] += 1
            assert np.array_equal(sampler.counts(), expect)


def test_masked_draws_never_leave_the_mask(sampler, logits):
    mask = np.zeros(V, bool)
    mask[[3, 500, 999]] = True  # the likeliest tokens are all masked out
    sampler.write("token_mask", bits(mask))
    got = {sampler.run(logits, temperature=1.0, seed=s, sample_flags=FLAGS["mask"])[0] for s in range(60)}
    assert got <= {3, 500, 999} and len(got) > 1


def test_logprobs_are_the_log_softmax_of_the_raw_logits(sampler, logits):
    """f32 on the GPU against float64: within 1e-5 (|logits| < 10, a 1,000-token sum)."""
    ref = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum())
    order = np.argsort(-logits, kind="stable")
    bias = np.zeros(V, np.float32)
    bias[order[7]] = 50  # the choice is moved; the logprobs stay those of the raw logits
    sampler.write("logit_bias", bias)
    tok, out = sampler.run(logits, temperature=0, n_logprobs=MAX_TOP, sample_flags=FLAGS["logprobs"] | FLAGS["bias"])
    assert tok == order[7]
    lps = out.view(np.float32)
    assert lps[1] == pytest.approx(ref[tok], abs=1e-5)
    assert list(out[2:2 + MAX_TOP]) == list(order[:MAX_TOP])
    assert np.allclose(lps[2 + MAX_TOP:2 + 2 * MAX_TOP], ref[order[:MAX_TOP]], atol=1e-5)


def test_emit_zero_samples_nothing(sampler, logits):
    sampler.run(logits, temperature=0)
    before = sampler.run(logits, temperature=0)[1].copy()
    tok, out = sampler.run(-logits, temperature=0, emit=0)
    assert np.array_equal(out, before)


# ---- the split sampler against the one-workgroup statement of the rule, bit for bit ----------------
SPLIT_CASES = [
    dict(temperature=0),
    dict(temperature=0.7),
    dict(temperature=0.7, top_p=0.9),
    dict(temperature=1.0, top_k=40),
    dict(temperature=1.0, top_k=1),
    dict(temperature=0.8, top_k=SAMPLE_CAP),
    dict(temperature=0.8, top_k=SAMPLE_CAP + 1),  # beyond the lists: the select scans the vocabulary
    dict(temperature=1.3, top_k=40, min_p=0.02, top_p=0.9),
    dict(temperature=0.9, min_p=0.3),
    dict(temperature=2.0, top_p=0.5),
    dict(temperature=0.7, top_p=0.9, n_logprobs=MAX_TOP, sample_flags=FLAGS["logprobs"]),
]


def split_logits(vocab: int, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "peaked":  # an LLM-like spread: a few tokens far above the crowd
        x = rng.standard_normal(vocab) * 2.0
        x[rng.choice(vocab, 30, replace=False)] += rng.uniform(4, 12, 30)
    elif kind == "flat":  # every token nearly as likely: every list overflows, the kernels scan chunks
        x = rng.standard_normal(vocab) * 0.05
    else:  # "ties": few distinct values, equal maxima in different chunks, equal keys at every list edge
        x = rng.integers(0, 6, vocab).astype(np.float64)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def pair(gpu):
    """A vocabulary of 20,011 tokens: chunks of 79 (more than a list holds; the last chunk shorter)."""
    return Sampler(gpu[1], vocab=20011), Sampler(gpu[1], vocab=20011, single=True)


def same(pair, logits, **fields) -> int:
    split, single = pair
    tok, out = split.run(logits, **fields)
    ref_tok, ref = single.run(logits, **fields)
    assert tok == ref_tok and np.array_equal(out, ref), (fields, tok, ref_tok)
    return tok


@pytest.mark.parametrize("kind", ["peaked", "flat", "ties"])
def test_split_sampler_writes_what_the_rule_writes(pair, kind):
    logits = split_logits(pair[0].V, kind, seed=3)
    toks = [same(pair, logits, seed=s, counter=s, **case) for s, case in enumerate(SPLIT_CASES)]
    assert len(set(toks)) > 1


def test_split_sampler_on_vocabulary_edges(gpu):
    """Greedy ties across chunk boundaries take the lowest index; masks that empty whole chunks (and
    all but one token); logprobs with penalties and bias; a vocabulary smaller than the 256 chunks."""
    for vocab in (20011, 300):
        pair = Sampler(gpu[1], vocab=vocab), Sampler(gpu[1], vocab=vocab, single=True)
        ch = -(-vocab // 256)
        logits = split_logits(vocab, "peaked", seed=vocab)
        top = logits.max() + 1
        tie = logits.copy()
        tie[[5 * ch - 1, 5 * ch, 9 * ch]] = top  # the last of chunk 4, the first of chunk 5, chunk 9
        assert same(pair, tie, temperature=0) == 5 * ch - 1
        for split_or_single in pair:
            split_or_single.write("token_mask", bits(np.arange(vocab) >= 5 * ch))
        assert same(pair, tie, temperature=0, sample_flags=FLAGS["mask"]) == 5 * ch
        mask = np.zeros(vocab, bool)
        mask[: ch * 100] = True
        mask[np.arange(vocab) % 7 == 0] = False
        for split_or_single in pair:
            split_or_single.write("token_mask", bits(mask))
            split_or_single.write("logit_bias", np.where(np.arange(vocab) % 11 == 0, 2.0, 0.0).astype(np.float32))
            split_or_single.write("token_counts", np.where(np.arange(vocab) % 13 == 0, 0x80000001, 0).astype(np.uint32))
        flags = FLAGS["mask"] | FLAGS["bias"] | FLAGS["penalties"] | FLAGS["logprobs"]
        for s, case in enumerate(SPLIT_CASES[1:6]):
            tok = same(pair, logits, seed=s, sample_flags=flags, n_logprobs=7, repetition_penalty=1.2,
                       frequency_penalty=0.1, **case)
            assert mask[tok]
        assert np.array_equal(pair[0].counts(), pair[1].counts())  # both counted the same draws
        for k in (vocab - 1, vocab, vocab + 5):  # top_k >= vocab: no limit
            same(pair, logits, temperature=1.0, top_k=k, top_p=0.8, seed=k)
        only = np.zeros(vocab, bool)
        only[vocab - 1] = True  # one allowed token, in the last (short) chunk
        for split_or_single in pair:
            split_or_single.write("token_mask", bits(only))
        assert same(pair, logits, temperature=1.0, top_k=3, top_p=0.5, sample_flags=FLAGS["mask"]) == vocab - 1


def test_split_sampler_emit_zero_samples_nothing(pair):
    logits = split_logits(pair[0].V, "peaked", seed=1)
    before = pair[0].run(logits, temperature=0)[1].copy()
    assert np.array_equal(pair[0].run(-logits, temperature=0.7, top_p=0.9, emit=0)[1], before)


def test_plans_split_the_sampler_from_8192_tokens():
    """The compiler's choice: one workgroup below SAMPLE_SPLIT_MIN_VOCAB, three dispatches (256, 256,
    1 workgroups) from it on, each bound to the plan's sampler buffers in binding order."""
    from webllm.kernels import SAMPLE_SPLIT_MIN_VOCAB, sample_dispatches, sample_plan_buffers

    small = sample_dispatches(Profile("f32"), vocab=SAMPLE_SPLIT_MIN_VOCAB - 1)
    assert [(k.name.split("_")[1], g) for k, g in small] == [("single", [1, 1, 1])]
    assert len(small[0][0].bindings) == 3 + len(sample_plan_buffers(SAMPLE_SPLIT_MIN_VOCAB - 1))
    split = sample_dispatches(Profile("f16"), vocab=SAMPLE_SPLIT_MIN_VOCAB)
    assert [(k.name.split("_")[1], g) for k, g in split] == [("chunks", [256, 1, 1]), ("mass", [256, 1, 1]),
                                                              ("draw", [1, 1, 1])]
    assert all(len(k.bindings) == 3 + len(sample_plan_buffers(SAMPLE_SPLIT_MIN_VOCAB)) for k, _ in split)
