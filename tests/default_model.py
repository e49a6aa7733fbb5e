"""The embedded default model's package for the tests that use it (test_default_model.py,
test_perplexity.py): compiled once per test module into a cache folder of the module's own, as
`webllm chat` with no model argument compiles it into the user's."""

from __future__ import annotations

from pathlib import Path

import pytest

from webllm.models_cache import default_model_path, resolve_model


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    try:
        default_model_path()
    except Exception as e:  # the wheel is installed by scripts/install.sh; say so if it is not
        pytest.fail(f"default model missing: {e}")
    return tmp_path_factory.mktemp("webllm-cache")


@pytest.fixture(scope="module")
def package(cache, monkeypatch_module) -> Path:
    monkeypatch_module.setenv("WEBLLM_CACHE", str(cache))
    return resolve_model(None, progress=False)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
