# ruff: noqa: F811 (the fixtures imported from web_node come back as test parameters)
"""The JavaScript runtime's variants in Node on Dawn: web/test/variants.test.js (every prefill and
decode variant and decode attention's split counts give the native runtime's ids and logits; the
fallbacks without subgroups or wide workgroup memory) and web/test/tuning.test.js (the load-time
timing), against the reference of tests/web_node.py. The rest of web/test runs in test_web_node.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from web_node import VARIANT_FILES, node, reference, run_node_tests  # noqa: E402, F401 (node, reference: fixtures)


def test_node_runtime_variants(node, reference, tmp_path):
    """`node --test` on web/test/tuning.test.js and variants.test.js."""
    run_node_tests(node, reference, tmp_path, VARIANT_FILES)
