"""Static memory planning: logical activation tensors -> a few physical buffers, by liveness."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BufferAssignment:
    buffers: dict[str, int]  # physical buffer name -> size in bytes
    where: dict[str, str]  # logical tensor -> physical buffer name


def plan_memory(ops, sizes: dict[str, int], pinned: set[str]) -> BufferAssignment:
    """Assign each logical tensor a physical buffer; tensors whose live ranges do not overlap share one.

    `ops` is the op list (each with .inputs/.outputs); `sizes` maps tensor -> bytes. A tensor is live
    from the first op that touches it to the last, inclusive, so an op's inputs never alias its
    outputs. Tensors in `pinned` (the residual stream, KV caches, token ids, logits) get their own
    buffer named after them: the runtime addresses them directly and they live across steps.
    """
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, op in enumerate(ops):
        for t in list(op.inputs) + list(op.outputs):
            first.setdefault(t, i)
            last[t] = i
    buffers: dict[str, int] = {}
    where: dict[str, str] = {}
    for t in pinned:
        buffers[t] = sizes[t]
        where[t] = t
    free_at: dict[str, int] = {}  # pooled buffer -> op index after which it is free
    pooled = sorted((t for t in first if t not in pinned), key=lambda t: (first[t], -sizes[t]))
    for t in pooled:
        best = None
        for b, end in free_at.items():
            if end < first[t] and (best is None or abs(buffers[b] - sizes[t]) < abs(buffers[best] - sizes[t])):
                best = b
        if best is None:
            best = f"act{len(free_at)}"
            buffers[best] = 0
        buffers[best] = max(buffers[best], sizes[t])
        free_at[best] = last[t]
        where[t] = best
    return BufferAssignment(buffers, where)
