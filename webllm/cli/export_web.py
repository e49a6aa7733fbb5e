"""webllm export-web: a static website that chats with the models in the browser."""

from __future__ import annotations

NAME = "export-web"
HELP = "write a static website (page, browser engine, model packages) that runs the models in the browser"
USES_MODEL = False


def add_arguments(p) -> None:
    p.add_argument("out", help="the folder to write the site into")
    p.add_argument("--model", "-m", action="append", default=None,
                   help="a model package folder, checkpoint folder or GGUF file (repeat for several; "
                        "default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--quantization", "-q", default="q4f16_1",
                   help="when a model is a checkpoint: q4f16_1 (default), q4f32_1, q0f16, q0f32")


def run(args) -> int:
    from webllm.export_web import export_site

    index = export_site(args.out, args.model, quantization=args.quantization)
    print(f"wrote {index.parent}: serve it with `python -m http.server -d {index.parent}` and open http://localhost:8000")
    return 0
