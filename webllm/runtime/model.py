"""Model: a loaded package on a WebGPU device, stepping prefill and decode with one compute pass each.

Everything is allocated at load: weight buffers, the plan's activation buffers and KV caches, one
pipeline per kernel and one bind group per dispatch. A step writes the 32-byte uniform (token count,
KV length, counter, sampling parameters), encodes the plan's dispatches into one compute pass and
submits. The sampled (or greedy) token id is written by the GPU into `token_ids[0]`, which the next
decode step embeds, so decoding needs no readback; ids are copied to small staging buffers and read
one step behind (pipelining).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from webllm.errors import AdapterError, PackageError, WebLLMError
from webllm.runtime.device import create_shader_module, device_features, device_limits, request_device
from webllm.runtime.package import (
    choose_profile,
    context_size,
    iter_shards,
    read_manifest,
    read_plan,
    usable_variants,
    variant_lacks,
)
from webllm.runtime.tuning import choose_kv_splits, choose_variant, plan_digest

_LOOKAHEAD = 2  # decode steps generate() keeps submitted beyond the token it reads (as the JavaScript runtime)
_STAGING = _LOOKAHEAD + 1  # token readback ring: the CPU reads step t while steps t + 1 .. t + LOOKAHEAD run


class _Native:
    """wgpu-native entry points the per-token path calls without wgpu-py's wrappers, resolved once at
    load. The pass calls (set pipeline, set bind group, dispatch) skip wgpu-py's per-call error check,
    which costs some microseconds a call (a decode step records 3 calls per dispatch, 150-500 calls:
    as long as a small model's whole step on the GPU); WebGPU defers a pass's errors to the encoder's
    finish() anyway, which stays checked. The map (`Model._map_read`) is requested with one callback
    made here, and resolved by polling the device without waiting."""

    def __init__(self):
        from wgpu import enums, flags
        from wgpu.backends.wgpu_native import _api

        lib, ffi = _api.lib, _api.ffi
        self.set_pipeline = lib.wgpuComputePassEncoderSetPipeline
        self.set_bind_group = lib.wgpuComputePassEncoderSetBindGroup
        self.dispatch = lib.wgpuComputePassEncoderDispatchWorkgroups
        self.null = ffi.NULL
        self.map_async, self.poll = _api.libf.wgpuBufferMapAsync, _api.libf.wgpuDevicePoll
        self.map_read, self.map_success = lib.WGPUMapMode_Read, lib.WGPUMapAsyncStatus_Success
        self.mapped, self.read_mode = enums.BufferMapState.mapped, flags.MapMode.READ
        self.map_status: list[int] = []  # the callback's status of the map in flight

        @ffi.callback("void(WGPUMapAsyncStatus, WGPUStringView, void *, void *)")
        def done(status, _message, _u1, _u2):
            self.map_status.append(status)

        self.map_info = _api.new_struct("WGPUBufferMapCallbackInfo", mode=lib.WGPUCallbackMode_AllowProcessEvents,
                                        callback=done)  # keeps `done` alive


def _native() -> _Native | None:
    try:
        return _Native()
    except (ImportError, AttributeError):  # pragma: no cover - another wgpu-py: its own calls then
        return None


def workgroups(d: tuple, n_tokens: int, kv_end: int, kv_splits: int = 0) -> tuple[int, int, int]:
    """The workgroup counts of dispatch d = (pipeline, bind group, x, y, z, tokens_per_y, kv_per_z, max_z)
    for a step of n_tokens ending at KV length kv_end, with the uniform's kv_splits (0: none asked)
    (FORMAT.md, "A step")."""
    _, _, x, y, z, per, kv_per, max_z = d
    if per is not None:
        y = -(-n_tokens // per)
    if kv_per is not None:
        z = -(-kv_end // kv_per)
        if max_z is not None:
            z = min(z, max_z, kv_splits or max_z)
    return x, y, z


class Model:
    """A compiled model package loaded on a WebGPU device (docs/FORMAT.md: the runtime interprets the
    plan; every size, binding and uniform offset comes from it)."""

    def __init__(self, folder, manifest, plan, adapter, device, buffers, encode_list, capacity: int,
                 features: set[str], limits: dict[str, int], scoring: bool):
        import wgpu

        self.folder = Path(folder)
        self.manifest = manifest
        self.plan = plan
        self.plan_digest = plan_digest(plan)  # part of the tuning cache's package key
        self.adapter = adapter
        self.device = device
        self.profile = plan["profile"]
        self.config = manifest["config"]
        self.capacity = capacity  # KV-cache positions allocated (<= the package's context_window)
        self.chunk = int(manifest["prefill_chunk"])
        self._buffers = buffers
        self._encode_list = encode_list  # plan dispatch list -> recorded form (builds pipelines on first use)
        self._lists: dict[str, list[tuple]] = {}  # "decode.gemv32", ... -> recorded form, built once
        self._dispatch: dict[str, list[tuple]] = {}  # phase -> [(pipeline, bind group, x, y, z, tokens_per_y, kv_per_z, max_z)]
        self._scoring = scoring
        # the variants this device can run (variant_features, variant_limits), most preferred first
        self.prefill_variants = usable_variants(plan, "prefill", features, limits)
        self.decode_variants = usable_variants(plan, "decode", features, limits)
        if not self.prefill_variants or not self.decode_variants:
            raise AdapterError(f"{folder}: no {'prefill' if not self.prefill_variants else 'decode'} variant of this "
                               f"package runs on this adapter (features: {plan['variant_features']}, "
                               f"limits: {plan['variant_limits']})")
        self._wgpu = wgpu
        self._native = _native()
        self.past = 0  # tokens in the KV cache (read-only outside: change it with truncate / reset)
        self._fields = plan["uniform"]["fields"]
        self._uniform = {f["name"]: f["default"] for f in self._fields}  # the values written each step
        self._counter = 0
        self.prefill_variant = self.decode_variant = ""  # set by use_prefill_variant / use_decode_variant
        self.kv_splits = 0  # decode attention's most splits in use (use_kv_splits; 0: the plan offers no choice)
        # what each streamed step copies back: the sampler's output (token, logprobs) when the plan has
        # one, else the token id alone
        self._readback = "sample_out" if "sample_out" in buffers else "token_ids"
        self._readback_bytes = buffers["sample_out"].size if "sample_out" in buffers else 4
        self._staging = [
            device.create_buffer(size=max(16, self._readback_bytes),
                                 usage=wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST)
            for _ in range(_STAGING)
        ]
        self.last_sample = np.zeros(1, np.uint32)  # the sampler's output words of the last token read

    # ---- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path, *, profile: str | None = None, max_binding_size: int | None = None,
             progress: bool = True, device=None, adapter=None, scoring: bool = False,
             decode_variant: str | None = None, context_window: int | None = None,
             prefill_variant: str | None = None, kv_splits: int | None = None) -> Model:
        """Load a package. `profile`: "f16"/"f32" (default: the first of the package's profile_order
        the device can run). `max_binding_size` lowers the adapter's storage binding limit (for tests).
        `scoring` also allocates the all-token logits buffer, for `score` (perplexity). `decode_variant`,
        `prefill_variant` force one of the plan's variants (default: the fastest on this adapter, timed
        once and cached). `kv_splits` forces one of the plan's split counts of decode attention (default:
        timed at a long context once and cached, see tuning.choose_kv_splits). `context_window` allocates
        a smaller KV cache than the package's."""
        import wgpu

        folder = Path(folder)
        manifest = read_manifest(folder)
        if device is None:
            adapter, device = request_device()
        features, limits = device_features(device), device_limits(device)
        profile = choose_profile(manifest, features, profile, str(folder))
        plan = read_plan(folder, manifest, profile)
        capacity = int(manifest["context_window"])
        if context_window is not None:
            if not 1 <= context_window <= capacity:
                raise WebLLMError(f"context_window {context_window}: must be between 1 and the package's {capacity}")
            capacity = int(context_window)
        limit = device.limits["max-storage-buffer-binding-size"]
        if max_binding_size is not None:
            limit = min(limit, max_binding_size)

        # Fit check before any allocation: every tensor and buffer must be bindable whole.
        for name, t in manifest["tensors"].items():
            if t["size"] > limit:
                raise AdapterError(
                    f"tensor {name} ({t['nbytes']} bytes) exceeds this adapter's storage binding limit of {limit} "
                    f"bytes; recompile with --max-binding-size {limit}")
        if scoring and "score_variants" not in plan:
            raise PackageError(f"{folder}: this package has no scoring phase (its vocabulary x prefill chunk is too large)")
        plan_buffers = [(b, context_size(b, capacity)) for b in plan["buffers"] if scoring or not b.get("optional")]
        for b, size in plan_buffers:
            if size > limit:
                rule = b.get("per_context")
                fix = (f"load with a context window of at most {limit // rule['bytes'] * rule['unit']} tokens, "
                       "or recompile with a smaller --context-window" if rule else "recompile with a smaller --prefill-chunk")
                raise AdapterError(
                    f"buffer {b['name']} ({size} bytes) exceeds this adapter's storage binding limit of {limit} bytes; {fix}")

        BU = wgpu.BufferUsage
        buffers = {}
        for b, size in plan_buffers:
            usage = 0
            for flag in b["usage"]:
                usage |= getattr(BU, flag)
            buffers[b["name"]] = device.create_buffer(size=size, usage=usage, label=b["name"])
        for name, t in manifest["tensors"].items():
            buffers[name] = device.create_buffer(size=t["size"], usage=BU.STORAGE | BU.COPY_DST, label=name)

        # Stream shards: verify each, then upload its byte ranges where the manifest says.
        total = sum(s["nbytes"] for s in manifest["shards"])
        bar = tqdm(total=total, desc="load", unit="B", unit_scale=True, disable=not progress)
        for i, data in iter_shards(folder, manifest):
            mv = memoryview(data)
            for name, tensor_off, shard_off, n in manifest["shards"][i]["uploads"]:
                device.queue.write_buffer(buffers[name], tensor_off, mv[shard_off : shard_off + n])
            bar.update(len(data))
        bar.close()

        # Pipelines (one per kernel) and bind groups (the plan's table), each built once, on first use: a
        # load compiles only the kernels of the variants it runs (the timing at first load, all of them).
        for kind, forced in (("prefill", prefill_variant), ("decode", decode_variant)):
            if forced is not None and forced not in plan[f"{kind}_variants"]:
                raise PackageError(f"{folder}: no {kind} variant {forced!r} (has: {', '.join(plan[f'{kind}_variants'])})")
            lacks = variant_lacks(plan, forced, features, limits) if forced is not None else []
            if lacks:
                raise AdapterError(f"{kind} variant {forced!r} needs {', '.join(lacks)}, which this device lacks")
        lists = [dl for kind in ("prefill", "decode") for n, dl in plan[f"{kind}_variants"].items()
                 if n in usable_variants(plan, kind, features, limits)]
        if scoring:
            lists += [plan["score_variants"][n] for n in usable_variants(plan, "prefill", features, limits)]
        sources = {}
        for kname in sorted({d["kernel"] for dl in lists for d in dl}):  # a missing file fails the load, not a step
            path = folder / "kernels" / plan["kernels"][kname]["file"]
            try:
                sources[kname] = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise PackageError(f"{path}: kernel file is missing") from None
        layouts, pipelines = {}, {}  # one bind group layout per list of binding types (FORMAT.md, `bind_groups`)
        btype = {"uniform": wgpu.BufferBindingType.uniform, "read-only-storage": wgpu.BufferBindingType.read_only_storage,
                 "storage": wgpu.BufferBindingType.storage}

        def layout(kname: str):
            types = tuple(plan["kernels"][kname]["bindings"])
            if types not in layouts:
                layouts[types] = device.create_bind_group_layout(entries=[
                    {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": btype[t]}}
                    for i, t in enumerate(types)])
            return layouts[types]

        def pipeline(kname: str):
            if kname not in pipelines:
                k = plan["kernels"][kname]
                module = create_shader_module(device, sources[kname], kname)
                pipelines[kname] = device.create_compute_pipeline(
                    layout=device.create_pipeline_layout(bind_group_layouts=[layout(kname)]),
                    compute={"module": module, "entry_point": k["entry_point"]}, label=kname)
            return pipelines[kname]

        bind_groups: dict[int, object] = {}

        def bind_group(i: int):
            if i not in bind_groups:
                g = plan["bind_groups"][i]
                try:
                    entries = [{"binding": j, "resource": {"buffer": buffers[b], "offset": 0, "size": buffers[b].size}}
                               for j, b in enumerate(g["buffers"])]
                except KeyError as e:
                    raise PackageError(f"{folder}: plan-{profile}.json binds unknown buffer {e}") from None
                bind_groups[i] = device.create_bind_group(layout=layout(g["kernel"]), entries=entries)
            return bind_groups[i]

        def encode_list(dlist: list[dict]) -> list[tuple]:
            return [(pipeline(d["kernel"]), bind_group(d["bind_group"]), *d["workgroups"], d.get("tokens_per_y"),
                     d.get("kv_per_z"), d.get("max_z")) for d in dlist]

        model = cls(folder, manifest, plan, adapter, device, buffers, encode_list, capacity, features, limits, scoring)
        model.use_prefill_variant(prefill_variant or choose_variant(model, "prefill"))
        model.use_decode_variant(decode_variant or choose_variant(model, "decode"))
        model.use_kv_splits(kv_splits or choose_kv_splits(model))
        return model

    def _recorded(self, key: str, dlist: list[dict]) -> list[tuple]:
        if key not in self._lists:
            self._lists[key] = self._encode_list(dlist)
        return self._lists[key]

    def use_prefill_variant(self, name: str) -> None:
        """Prefill (and score) with the plan's prefill variant `name` from now on."""
        if name not in self.prefill_variants:
            raise WebLLMError(f"no usable prefill variant {name!r} (has: {', '.join(self.prefill_variants)})")
        self.prefill_variant = name
        self._dispatch["prefill"] = self._recorded(f"prefill.{name}", self.plan["prefill_variants"][name])
        if self._scoring:
            self._dispatch["score"] = self._recorded(f"score.{name}", self.plan["score_variants"][name])

    def use_decode_variant(self, name: str) -> None:
        """Decode with the plan's decode variant `name` from now on."""
        if name not in self.decode_variants:
            raise WebLLMError(f"no usable decode variant {name!r} (has: {', '.join(self.decode_variants)})")
        self.decode_variant = name
        self._dispatch["decode"] = self._recorded(f"decode.{name}", self.plan["decode_variants"][name])

    @property
    def kv_splits_choices(self) -> list[int]:
        """The split counts of decode attention this plan offers (`decode_splits`; older plans: none)."""
        return list(self.plan.get("decode_splits", {}).get("choices", []))

    def use_kv_splits(self, n: int) -> None:
        """Cut decode attention's KV range into at most `n` splits from now on (one of kv_splits_choices;
        0 where the plan offers none)."""
        choices = self.kv_splits_choices
        if choices and n not in choices:
            raise WebLLMError(f"kv_splits {n}: this package offers {', '.join(map(str, choices))}")
        if not choices and n:
            raise WebLLMError(f"kv_splits {n}: this package's plan has no decode_splits choices")
        self.kv_splits = n
        if "kv_splits" in self._uniform:
            self._uniform["kv_splits"] = n

    @property
    def gpu_memory_bytes(self) -> int:
        """Bytes of every GPU buffer the model allocated: weights, the plan's buffers, KV caches at `capacity`."""
        return int(sum(b.size for b in self._buffers.values()))

    # ---- stepping --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the conversation: the KV cache is simply overwritten from position 0."""
        self.past = 0

    def truncate(self, past: int) -> None:
        """Keep only the first `past` tokens of the KV cache (a rewind: later steps overwrite the rest)."""
        if not 0 <= past <= self.past:
            raise WebLLMError(f"truncate({past}): must be between 0 and the {self.past} tokens in the cache")
        self.past = int(past)

    def set_sampling(self, temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None, **fields) -> None:
        """How the GPU picks each next token: temperature 0 is greedy (argmax); otherwise a draw from
        softmax(logits / temperature) within the top-p nucleus. The draw of each step is fixed by
        (seed, step counter); seed None picks a random one. `fields`: other sampling fields of the
        plan's uniform table, by name; every field not given returns to its default."""
        if temperature < 0 or not 0 < top_p <= 1:
            raise WebLLMError(f"sampling: temperature must be >= 0 and top_p in (0, 1] (got {temperature}, {top_p})")
        unknown = set(fields) - set(self._uniform)
        if unknown:
            raise WebLLMError(f"sampling: this package's uniform has no field {sorted(unknown)[0]!r}")
        seed = int(np.random.default_rng().integers(0, 2**32)) if seed is None else int(seed) & 0xFFFFFFFF
        self._uniform = {f["name"]: f["default"] for f in self._fields}
        self._uniform.update(fields, temperature=float(temperature), top_p=float(top_p), seed=seed)
        if "kv_splits" in self._uniform:  # the runtime's choice, not a sampling field
            self._uniform["kv_splits"] = self.kv_splits
        self._counter = 0

    @property
    def sampling(self) -> dict:
        """The uniform's current sampling values (every field but the per-step ones and kv_splits)."""
        return {k: v for k, v in self._uniform.items() if k not in ("n_tokens", "past", "counter", "kv_splits")}

    def _encode(self, phase: str, n_tokens: int, staging: int | None = None):
        """Record one step (one compute pass) for the current KV length; submitted by `_submit`."""
        enc = self.device.create_command_encoder()
        cp = enc.begin_compute_pass()
        kv_end = self.past + n_tokens
        n = self._native
        if n is not None:  # the same three calls, straight into wgpu-native (see _Native)
            set_pipeline, set_bind_group, dispatch, null = n.set_pipeline, n.set_bind_group, n.dispatch, n.null
            p = cp._internal
            last_pipe = last_group = None
            for d in self._dispatch[phase]:
                if d[0] is not last_pipe:
                    set_pipeline(p, d[0]._internal)
                    last_pipe = d[0]
                if d[1] is not last_group:
                    set_bind_group(p, 0, d[1]._internal, 0, null)
                    last_group = d[1]
                dispatch(p, *workgroups(d, n_tokens, kv_end, self.kv_splits))
        else:
            for d in self._dispatch[phase]:
                cp.set_pipeline(d[0])
                cp.set_bind_group(0, d[1])
                cp.dispatch_workgroups(*workgroups(d, n_tokens, kv_end, self.kv_splits))
        cp.end()
        if staging is not None:
            enc.copy_buffer_to_buffer(self._buffers[self._readback], 0, self._staging[staging], 0, self._readback_bytes)
        return enc.finish()

    def _submit(self, commands, n_tokens: int) -> None:
        """Write the step's uniform, then submit its recorded pass (queue order keeps them paired)."""
        self._uniform.update(n_tokens=n_tokens, past=self.past, counter=self._counter)
        data = bytearray(self.plan["uniform"]["size"])
        for f in self._fields:
            struct.pack_into("<I" if f["type"] == "u32" else "<f", data, f["offset"],
                             int(self._uniform[f["name"]]) if f["type"] == "u32" else float(self._uniform[f["name"]]))
        self.device.queue.write_buffer(self._buffers["uniform"], 0, data)
        self.device.queue.submit([commands])
        self.past += n_tokens
        if self._uniform.get("emit", 1):  # the counter numbers the draws: steps that sample nothing don't count
            self._counter += 1

    def _step(self, phase: str, n_tokens: int, staging: int | None = None) -> None:
        self._submit(self._encode(phase, n_tokens, staging), n_tokens)

    def prefill(self, token_ids, staging: int | None = None) -> None:
        """Append tokens to the KV cache, in chunks of at most `prefill_chunk`; afterwards the logits
        (and the next token, sampled on the GPU) are those of the last token."""
        ids = self._check_ids(token_ids)
        for s in range(0, ids.size, self.chunk):
            part = ids[s : s + self.chunk].astype(np.uint32)
            self.device.queue.write_buffer(self._buffers["token_ids"], 0, part.tobytes())
            last = s + self.chunk >= ids.size
            if "emit" in self._uniform:  # only the last chunk's next token is wanted (FORMAT.md, "Sampling")
                self._uniform["emit"] = int(last)
            self._step("prefill", int(part.size), staging if last else None)
        if "emit" in self._uniform:
            self._uniform["emit"] = 1

    def _check_ids(self, token_ids) -> np.ndarray:
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            raise WebLLMError("at least one token is needed")
        vocab = self.config["vocab_size"]
        if ids.min() < 0 or ids.max() >= vocab:
            raise WebLLMError(f"token id out of range [0, {vocab}): {int(ids.max() if ids.max() >= vocab else ids.min())}")
        if self.past + ids.size > self.capacity:
            raise WebLLMError(
                f"context window full: {self.past} + {ids.size} tokens > {self.capacity} (context_window of the package)")
        return ids

    def decode(self, staging: int | None = None) -> None:
        """One decode step on the token the GPU last sampled (token_ids[0])."""
        if self.past + 1 > self.capacity:
            raise WebLLMError(f"context window full ({self.capacity} tokens)")
        self._step("decode", 1, staging)

    def score(self, token_ids) -> np.ndarray:
        """Append tokens to the KV cache and return the logits after each of them, float32 [n, vocab].
        Needs a model loaded with scoring=True. Used for perplexity."""
        if "score" not in self._dispatch:
            raise WebLLMError("score() needs Model.load(..., scoring=True)")
        ids = self._check_ids(token_ids)
        v = self.config["vocab_size"]
        out = np.empty((ids.size, v), dtype=np.float32)
        for s in range(0, ids.size, self.chunk):
            part = ids[s : s + self.chunk].astype(np.uint32)
            self.device.queue.write_buffer(self._buffers["token_ids"], 0, part.tobytes())
            self._step("score", int(part.size))
            raw = self.device.queue.read_buffer(self._buffers["logits_all"], 0, part.size * v * 4)
            out[s : s + part.size] = np.frombuffer(raw, dtype=np.float32).reshape(part.size, v)
        return out

    def logits(self) -> np.ndarray:
        """The last step's logits for its last token, float32 [vocab] (a readback: tests and tools)."""
        v = self.config["vocab_size"]
        return np.frombuffer(self.device.queue.read_buffer(self._buffers["logits"], 0, v * 4), dtype=np.float32).copy()

    def next_token(self) -> int:
        """The token the last step picked (a blocking readback)."""
        return int(np.frombuffer(self.device.queue.read_buffer(self._buffers["token_ids"], 0, 4), np.uint32)[0])

    def _read_staging(self, i: int) -> int:
        buf = self._staging[i]
        self._map_read(buf)
        self.last_sample = np.frombuffer(bytes(buf.read_mapped(0, self._readback_bytes)), np.uint32)
        buf.unmap()
        return int(self.last_sample[0])

    def _map_read(self, buf) -> None:
        """Map `buf` for reading as soon as the GPU is done with the submission that wrote it, while later
        steps still run. wgpu-py's map_sync / map_async hand the wait to a thread that polls the device
        until every submitted step is done (then the GPU would idle while the CPU reads a token and
        submits the next); here the map is requested from wgpu-native directly and the device polled
        without waiting, which resolves it when its own step ends (wgpu tracks each buffer's last
        submission). The CPU spins meanwhile. map_sync where wgpu-py's internals differ."""
        n = self._native
        if n is None:
            buf.map_sync(self._wgpu.MapMode.READ, 0, buf.size)
            return
        n.map_status.clear()
        n.map_async(buf._internal, n.map_read, 0, buf.size, n.map_info)
        dev = self.device._internal
        while not n.map_status:
            n.poll(dev, False, n.null)
            if not n.map_status:
                time.sleep(0)  # a step takes a fraction of a millisecond to a few
        if n.map_status[0] != n.map_success:
            raise AdapterError(f"could not read the sampled token back (map status {n.map_status[0]}): "
                               "the GPU device may be lost")
        buf._map_state = n.mapped  # what wgpu-py's own map would have recorded
        buf._mapped_status = (0, buf.size, n.read_mode)
        buf._mapped_memoryviews = []

    def write_buffer(self, name: str, data) -> None:
        """Write a plan buffer by name from the start (the sampler's logit_bias, token_counts, token_mask)."""
        if name not in self._buffers:
            raise WebLLMError(f"this package's plan has no buffer {name!r}")
        self.device.queue.write_buffer(self._buffers[name], 0, np.ascontiguousarray(data).tobytes())

    def generate(self, prompt_ids, max_new_tokens: int, stop_ids=(), mask=None) -> Iterator[int]:
        """Generation after `prompt_ids` (appended to the cache), sampling as `set_sampling` says
        (greedy by default). Yields token ids as they come.

        Pipelined: the sampled id never leaves the GPU on the critical path. Up to LOOKAHEAD decode
        steps are submitted beyond the one whose token is read (each copies its id into a ring of
        mappable buffers, read without waiting for the later steps: _map_read), so the CPU reads token
        t and the caller handles it while the GPU runs. Afterwards the model is in the state of a
        generation that submits step t + 1 just before it yields token t: the KV cache holds the
        prompt and every token fed back (not the stop token that ends the generation), and `logits()`
        and `token_ids[0]` are those of that last step; steps submitted beyond it are rolled back and
        that step is run once more (as the JavaScript runtime does).

        `mask(token)` (a grammar): called with None before the prefill and with each token before
        the next step is submitted (no lookahead then: each draw needs the previous token); it returns
        the `token_mask` words for the next draw. After each yield, `last_sample` holds the sampler's
        output words for that token (FORMAT.md, "Sampling": logprobs).
        """
        stop = set(int(s) for s in stop_ids)
        max_new_tokens = min(max_new_tokens, self.capacity - self.past - len(prompt_ids) + 1)
        if max_new_tokens <= 0:
            raise WebLLMError(f"context window full: {self.past} + {len(prompt_ids)} tokens, capacity {self.capacity}")
        ids = self._check_ids(prompt_ids)
        last_chunk = ids[(ids.size - 1) // self.chunk * self.chunk :]
        # step k (the prefill's last chunk, then decode steps) produces token k: its KV length and counter
        steps = [(self.past + ids.size - last_chunk.size, self._counter)]
        if mask is not None:
            self.write_buffer("token_mask", mask(None))
        self.prefill(ids, staging=0)
        ahead = 0 if mask is not None else _LOOKAHEAD
        tokens: list[int] = []
        submitted = 1  # steps submitted
        keep = 0  # the last step a generation without lookahead would have run, were it to end here

        def submit() -> None:
            nonlocal submitted
            steps.append((self.past, self._counter))
            self._step("decode", 1, staging=submitted % _STAGING)
            submitted += 1

        def settle() -> None:
            nonlocal keep
            if submitted > keep + 1:  # roll back to step `keep` and run it again on the same input
                self.past, self._counter = steps[keep]
                if keep == 0:
                    self.prefill(last_chunk)
                else:
                    self.device.queue.write_buffer(self._buffers["token_ids"], 0, np.uint32(tokens[keep - 1]).tobytes())
                    self._step("decode", 1)
            keep = submitted - 1  # settled: nothing past it is left to roll back

        try:
            for i in range(max_new_tokens):
                while submitted < max_new_tokens and submitted <= i + ahead:
                    submit()
                tok = self._read_staging(i % _STAGING)
                tokens.append(tok)
                keep = i
                if tok in stop or i + 1 == max_new_tokens:
                    settle()
                    yield tok
                    return
                if mask is not None:
                    self.write_buffer("token_mask", mask(tok))
                    submit()
                keep = i + 1
                yield tok
        finally:
            settle()


__all__ = ["Model", "workgroups"]
