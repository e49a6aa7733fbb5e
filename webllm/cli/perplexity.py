"""webllm perplexity: how well a package predicts a text file."""

from __future__ import annotations

from pathlib import Path

from webllm.errors import InputError

NAME = "perplexity"
HELP = "perplexity of a text file under the model (the text must fit the context window)"
USES_MODEL = True


def add_arguments(p) -> None:
    from webllm.cli.main import positive_int

    p.add_argument("--file", "-f", required=True, help="a UTF-8 text file")
    p.add_argument("--max-tokens-eval", type=positive_int, default=None, help="use only the first N tokens")


def run(args) -> int:
    from tqdm import tqdm

    from webllm.engine.tokenizer import Tokenizer
    from webllm.evaluation.perplexity import perplexity
    from webllm.models_cache import resolve_model
    from webllm.runtime import Model

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read as UTF-8 text ({e})") from None
    package = resolve_model(args.model, args.quantization, progress=not args.quiet)
    model = Model.load(package, profile=args.profile, progress=not args.quiet, scoring=True)
    tok = Tokenizer(model.folder / model.manifest["tokenizer"]["file"], model.manifest["tokenizer"])
    ids = tok.encode(text, add_special_tokens=True)[: args.max_tokens_eval]
    bar = tqdm(total=len(ids), desc="score", unit="tok", disable=args.quiet)
    ppl = perplexity(model, ids, lambda done, total: bar.update(done - bar.n))
    bar.close()
    print(f"perplexity {ppl:.4f} over {len(ids)} tokens ({model.manifest['quantization']}, profile {model.profile})")
    return 0
