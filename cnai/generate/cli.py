"""`cnai generate`: a reply from a generator on this machine (registered in cnai/cli.py).

`cnai generate PROMPT [OPTIONS]` is the short form of `cnai generate reply PROMPT [OPTIONS]`; the group's other
commands live where their imports may: `cnai generate register` (into the model registry, audited) in
cnai/deploy/cli.py, as `cnai models approve` is added to the `models` group of cnai/registry/cli.py.
`cnai serve --generator URI` serves the same generator over HTTP (POST /v1/models/{name}/generate).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from cnai.errors import CnaiError

console = Console(stderr=True)
DEFAULT_COMMAND = "reply"


class PromptFirstGroup(TyperGroup):
    """A group whose first word, when it names none of its commands, is the default command's prompt: so
    `cnai generate "I lost my card"` keeps working beside `cnai generate register ...` (a prompt that is a
    command's name needs the long form, `cnai generate reply register`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: the click Context typer vendors
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


generate_app = typer.Typer(
    cls=PromptFirstGroup,
    no_args_is_help=True,
    help="Text generation: `cnai generate PROMPT` replies on this machine; `register` puts a generator into the"
    " model registry.",
)


def generate(
    prompt: Annotated[str, typer.Argument(help="the user's message")],
    generator: Annotated[
        str, typer.Option(help="bundled | onnx:bundled | onnx:DIR | s3://.../model.tar.gz | hf:DIR | bedrock:ID")
    ] = "onnx:bundled",
    system: Annotated[str | None, typer.Option(help="a system message before the prompt")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, max=1024, help="tokens to generate at most")] = 128,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="0 = greedy")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="nucleus sampling mass")] = 1.0,
    stop: Annotated[list[str] | None, typer.Option(help="stop sequence (repeatable)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for sampling")] = None,
    deadline: Annotated[float | None, typer.Option(help="seconds; the text so far is returned then")] = None,
    threads: Annotated[int, typer.Option(min=1, max=64, help="CPU threads")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole Generation as JSON")] = False,
) -> None:
    """Generate a reply with the bundled generator (or another one), on this machine."""
    from cnai.generate import GenerationParams, load_generator

    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    try:
        params = GenerationParams(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=tuple(stop or ()),
            seed=seed,
            deadline_s=deadline,
        )
        model = load_generator(generator, threads=threads)
        result = model.generate(messages, params)
    except CnaiError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        fields = {k: getattr(result, k) for k in ("text", "tokens_in", "tokens_out", "finish_reason")}
        timing = {"ttft_ms": round(result.ttft_ms, 2), "total_ms": round(result.total_ms, 2)}
        typer.echo(json.dumps({"model": str(model.identity), **fields, **timing}, indent=2))
        return
    typer.echo(result.text)
    speed = result.tokens_out / max(result.total_ms / 1000.0, 1e-9)
    console.print(
        f"{model.identity}: {result.tokens_in} tokens in, {result.tokens_out} out ({result.finish_reason}), "
        f"first token {result.ttft_ms:.0f} ms, {speed:.1f} tokens/s",
        style="dim",
        highlight=False,
    )


generate_app.command(DEFAULT_COMMAND)(generate)


def register(app: typer.Typer) -> None:
    app.add_typer(generate_app, name="generate")
