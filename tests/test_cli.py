"""The command line as a new user meets it: bad numbers are refused by the parser before anything
loads, flags exist only where they mean something, and `webllm chat` keeps its conversation through
/system, /stats and bad turns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from webllm.cli.main import main


@pytest.mark.parametrize("argv, needle", [
    (["generate", "-p", "hi", "--max-tokens", "0"], "--max-tokens: must be at least 1"),
    (["generate", "-p", "hi", "--max-tokens", "-3"], "--max-tokens: must be at least 1"),
    (["generate", "-p", "hi", "--temperature", "-1"], "--temperature: must lie in [0, 2]"),
    (["chat", "--top-p", "0"], "--top-p: must lie in (0, 1]"),
    (["bench", "--repeat", "0"], "--repeat: must be at least 1"),
    (["compile", "x.gguf", "-o", "out", "--context-window", "0"], "--context-window: must be at least 1"),
    (["compile", "x.gguf", "-o", "out", "--prefill-tiles", "32,big"], "--prefill-tiles: expected token tiles among 32, 64, 128"),
    (["compile", "x.gguf", "-o", "out", "--prefill-tiles", "48"], "--prefill-tiles: expected token tiles"),
    (["info", "--temperature", "1"], "unrecognized arguments: --temperature"),
    (["bench", "--seed", "1"], "unrecognized arguments: --seed"),
])
def test_bad_flags_are_refused_by_the_parser(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


def test_chat_commands_keep_the_session(bpe_package):
    """/system sets a system prompt, /stats reports the last reply, an unknown command is explained;
    the session goes on to the end of its input."""
    script = "Hello\n/stats\n/system You are terse.\nHi again\n/bogus\n/exit\n"
    r = subprocess.run([sys.executable, "-m", "webllm", "chat", str(bpe_package), "--max-tokens", "4", "--quiet"],
                       input=script, capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "tok/s" in r.stdout  # /stats
    assert "system prompt set" in r.stdout
    assert "unknown command /bogus" in r.stdout


def test_generate_with_a_json_schema(bpe_package, tmp_path):
    import json

    schema = {"type": "object", "required": ["n"], "additionalProperties": False,
              "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 3}}}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    r = subprocess.run([sys.executable, "-m", "webllm", "generate", str(bpe_package), "-p", "a number", "--quiet",
                        "--json-schema", str(tmp_path / "s.json"), "--max-tokens", "20"],
                       capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n"] in (1, 2, 3)
