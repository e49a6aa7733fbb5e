"""The conformance fixtures (tests/conformance/, written by scripts/make_conformance.py): this runtime
must produce their ids exactly and their logits within tolerance, on both profiles; and the committed
package must be what the current compiler writes, so the JavaScript runtime, which checks itself
against the same files, is tested against today's kernels and plans."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from webllm.runtime import Model
from webllm.runtime.conformance import load_expected, run_conformance

FIXTURE = Path(__file__).parent / "conformance"
ROOT = FIXTURE.parent.parent


@pytest.mark.parametrize("profile", ["f32", "f16"])
def test_fixture_cases(zoo, profile):
    if profile == "f16" and "shader-f16" not in zoo.device.features:
        pytest.skip("this adapter has no shader-f16")
    model = Model.load(FIXTURE / load_expected(FIXTURE)["package"], profile=profile, progress=False,
                       adapter=zoo.adapter, device=zoo.device)
    results = run_conformance(model, FIXTURE)
    assert len(results) == (6 if profile == "f32" else 4)
    assert all(r.ok for r in results), [f"{r.name}: {r.detail}" for r in results if not r.ok]


def test_fixture_is_current(tmp_path):
    """Recompiling the committed checkpoint gives the committed package, byte for byte (plans, kernels,
    manifest, shards). A change to the compiler or kernels must regenerate the fixture."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_conformance import compile_fixture

    fresh = compile_fixture(FIXTURE / "checkpoint", tmp_path / "package")
    committed = FIXTURE / "package"
    stale = "stale conformance fixture: run .venv/bin/python scripts/make_conformance.py"
    names = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(committed).as_posix() for p in committed.rglob("*") if p.is_file()), stale
    for name in names:
        if name == "manifest.json":
            a, b = (json.loads((d / name).read_text()) for d in (fresh, committed))
            a.pop("compiler"), b.pop("compiler")
            assert a == b, stale
        else:
            assert (fresh / name).read_bytes() == (committed / name).read_bytes(), f"{name}: {stale}"


def test_runner_command_line():
    r = subprocess.run([sys.executable, "-m", "webllm.runtime.conformance", str(FIXTURE), "--profile", "f32"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "6 passed, 0 failed"
