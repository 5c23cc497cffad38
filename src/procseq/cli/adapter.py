"""`procseq adapter list|export`: the multi-domain adapters."""

from __future__ import annotations

from pathlib import Path

import click

from procseq.cli.common import (
    MODEL_HELP,
    main,
    parse_mix,
)


@main.group()
def adapter() -> None:
    """Multi-domain adapters (asymmetric / masked LoRA): list their domains, export one as a plain LoRA."""


def _adapter_file(model: str, adapters: str | None) -> Path:
    from procseq.models.loading import installed_adapters, resolve_model

    if adapters:
        return Path(adapters)
    found = installed_adapters(resolve_model(model))
    if found is None:
        raise FileNotFoundError(f"{model} has no installed adapters (adapters/adapters.safetensors); pass --adapters FILE.")
    return found


@adapter.command("list")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--adapters", default=None, help="An adapter file to read instead of the model's installed one.")
def adapter_list(model: str, adapters: str | None) -> None:
    """Print the domains of the installed adapters, one per line."""
    from procseq.adapters import adapter_file_info

    for name in adapter_file_info(_adapter_file(model, adapters))["domains"]:
        click.echo(name)


@adapter.command("export")
@click.option("--domain", "-d", default=None, help="The domain to export (one of `procseq adapter list`).")
@click.option("--mix", default=None, help="Export a mix instead of one domain, e.g. 'clay=0.5,sand_art=0.5'.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="The .safetensors file to write.")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--adapters", default=None, help="An adapter file to export from instead of the model's installed one.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def adapter_export(domain: str | None, mix: str | None, out: Path, model: str, adapters: str | None,
                   overwrite: bool) -> None:
    """Write one domain (or a mix) as a plain LoRA that stock FluxPipeline.load_lora_weights loads."""
    from diffusers import FluxTransformer2DModel

    from procseq.adapters import export_domain, load_adapters
    from procseq.models.loading import resolve_model

    if (domain is None) == (mix is None):
        raise ValueError("Pass exactly one of --domain D or --mix 'a=0.5,b=0.5'.")
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must be a .safetensors file, got {out}.")
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a .safetensors file name.")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --out or pass --overwrite.")
    file = _adapter_file(model, adapters)
    transformer = FluxTransformer2DModel.from_pretrained(resolve_model(model), subfolder="transformer")
    known = load_adapters(transformer, file)
    if domain is not None and domain not in known:
        raise ValueError(f"Unknown adapter domain {domain!r}; the adapters hold: {', '.join(known)}.")
    export_domain(transformer, domain if domain is not None else parse_mix(mix), out)  # atomic
    click.echo(f"wrote {out}: load it with FluxPipeline.load_lora_weights('{out}')")
