"""Build-time generation of the Reference pages (mkdocs-gen-files runs this on every ``mkdocs build``).

Nothing here is copied by hand: the configuration tables walk the validated pydantic models, the pipeline
table asks the project's registry, the CLI pages capture ``--help``, and the API pages are mkdocstrings
directives over the package's modules. A key added to a model or a pipeline added to the registry appears
in the site at the next build (and ``tests/docs`` checks that it does).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import io
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

import mkdocs_gen_files
import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

# (parameter section, model, the file that documents it, a sentence)
CONFIG_MODELS = [
    ("", "diamond_kedro.config:DiamondConfig", "Atari runs (`atari`, `atari_epoch`, `atari_games`, the phase pipelines; also Catch)"),
    ("csgo", "diamond_kedro.csgo.config:CsgoConfig", "the CS:GO pipelines (`csgo_ingest`, `csgo`)"),
    ("static_world_model", "diamond_kedro.datasets.config:StaticWorldModelConfig",
     "bring-your-own gameplay (`static_world_model_ingest`, `static_world_model`)"),
]

# API pages: one per module listed (mkdocstrings renders their docstrings)
API_MODULES = [
    "diamond_kedro.config", "diamond_kedro.errors", "diamond_kedro.hooks", "diamond_kedro.distributed",
    "diamond_kedro.envs.atari", "diamond_kedro.envs.catch", "diamond_kedro.envs.collector",
    "diamond_kedro.envs.world_model_env",
    "diamond_kedro.replay.store", "diamond_kedro.replay.sampler",
    "diamond_kedro.models.denoiser", "diamond_kedro.models.diffusion_sampler", "diamond_kedro.models.rew_end_model",
    "diamond_kedro.models.actor_critic", "diamond_kedro.models.agent",
    "diamond_kedro.training.run", "diamond_kedro.training.imagination", "diamond_kedro.training.returns",
    "diamond_kedro.evaluation.scores", "diamond_kedro.evaluation.fidelity", "diamond_kedro.evaluation.image_metrics",
    "diamond_kedro.datasets.config", "diamond_kedro.datasets.writer", "diamond_kedro.datasets.video",
    "diamond_kedro.datasets.minari", "diamond_kedro.datasets.csgo_hdf5",
    "diamond_kedro.csgo.config", "diamond_kedro.play.loading", "diamond_kedro.sweep.spec",
]


def _load(spec: str) -> type[BaseModel]:
    module, name = spec.split(":")
    return getattr(__import__(module, fromlist=[name]), name)


def _field_comments(model: type[BaseModel]) -> dict[str, str]:
    """The ``# comment`` at the end of each field's line in the model's source: the field's explanation."""
    out: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        for line in lines:
            stripped = line.strip()
            if ":" in stripped and "#" in stripped and not stripped.startswith(("#", "def ", "@", "class ")):
                name = stripped.split(":", 1)[0].strip()
                if name.isidentifier():
                    out[name] = stripped.split("#", 1)[1].strip()
    return out


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("NoneType", "None")


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _constraints(field: Any) -> str:
    parts = []
    for m in field.metadata:
        for attr, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("min_length", "len ≥"), ("max_length", "len ≤")):
            if getattr(m, attr, None) is not None:
                parts.append(f"{sym} {getattr(m, attr)}")
    return ", ".join(parts)


def config_rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str, str, str]]:
    """(key, type, default, constraint, explanation) for every leaf key, depth first, in declaration order."""
    rows = []
    comments = _field_comments(model)
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        sub = _submodel(field.annotation)
        if sub is not None:
            rows.extend(config_rows(sub, key))
            continue
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        rows.append((key, _type_name(field.annotation), default, _constraints(field), field.description or comments.get(name, "")))
    return rows


def config_keys() -> list[str]:
    """Every leaf key of every config model (the docs test compares this with the page)."""
    return [row[0] for section, spec, _ in CONFIG_MODELS for row in config_rows(_load(spec), section)]


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def base_values() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in sorted((ROOT / "conf" / "base").glob("parameters*.yml")):
        values.update(_flatten(yaml.safe_load(path.read_text()) or {}))
    return values


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_configuration() -> None:
    base = base_values()
    with mkdocs_gen_files.open("reference/configuration.md", "w") as f:
        f.write("# Configuration keys\n\n")
        f.write("*Generated at build time from the validated pydantic models "
                "(`src/diamond_kedro/config.py`, `csgo/config.py`, `datasets/config.py`).* "
                "Every key below can be set in `conf/<profile>/parameters*.yml` or on the command line "
                "(`kedro run --params=denoiser.training.lr=1e-4`); unknown keys and out-of-range values are "
                "errors before any work. *default* is the model's default, *conf/base* the value the paper "
                "profile sets (profiles `quick`, `ci`, `catch` override single keys).\n\n")
        for section, spec, sentence in CONFIG_MODELS:
            model = _load(spec)
            title = f"`{section}`" if section else "Atari run"
            f.write(f"## {title}\n\nFor {sentence}; model `{spec.replace(':', '.')}`.\n\n")
            f.write("| key | type | default | conf/base | constraint | what |\n|---|---|---|---|---|---|\n")
            for key, typ, default, cons, what in config_rows(model, section):
                b = base.get(key, "")
                f.write(f"| `{key}` | {_cell(typ)} | {_cell(default)} | {_cell(b)} | {_cell(cons)} | {_cell(what)} |\n")
            f.write("\n")


def pipelines() -> dict[str, Any]:
    from kedro.framework.project import configure_project

    configure_project("diamond_kedro")
    from diamond_kedro.pipeline_registry import register_pipelines

    return register_pipelines()


def _first_paragraph(doc: str | None) -> str:
    return inspect.cleandoc(doc or "").split("\n\n")[0].replace("\n", " ")


def _pipeline_doc(name: str) -> str:
    """What a pipeline does: its ``create_pipeline`` docstring, else its module's."""
    import importlib

    try:
        mod = importlib.import_module(f"diamond_kedro.pipelines.{name}.pipeline")
    except ImportError:
        mod = importlib.import_module(f"diamond_kedro.pipelines.{name}")
    doc = _first_paragraph(getattr(getattr(mod, "create_pipeline", None), "__doc__", None)) or _first_paragraph(mod.__doc__)
    # Kedro 1.7 deprecates --pipeline; the docs write --pipelines whatever an older docstring says
    return doc.replace("--pipeline=", "--pipelines=")


def write_pipelines() -> None:
    registry = pipelines()
    with mkdocs_gen_files.open("reference/pipelines.md", "w") as f:
        f.write("# Pipelines\n\n*Generated at build time from the project's registry "
                "(`diamond_kedro.pipeline_registry.register_pipelines()`).* Run one with "
                "`kedro run --pipelines=<name> --env=<profile>`; `__default__` is what a bare `kedro run` runs.\n\n")
        f.write("| pipeline | nodes | what it does |\n|---|---:|---|\n")
        for name in sorted(registry):
            doc = _pipeline_doc(name) if name != "__default__" else "the same as `atari_epoch`"
            f.write(f"| `{name}` | {len(registry[name].nodes)} | {_cell(doc)} |\n")
        f.write("\n## Nodes\n\n")
        for name in sorted(registry):
            if name == "__default__":
                continue
            f.write(f"### `{name}`\n\n| node | inputs | outputs |\n|---|---|---|\n")
            for node in registry[name].nodes:
                ins = ", ".join(f"`{i}`" for i in node.inputs)
                outs = ", ".join(f"`{o}`" for o in node.outputs)
                f.write(f"| `{node.name}` | {ins} | {outs} |\n")
            f.write("\n")


def _help(parser: argparse.ArgumentParser) -> str:
    return parser.format_help()


def cli_helps() -> list[tuple[str, str]]:
    from diamond_kedro.play.cli import build_parser as play_parser
    from diamond_kedro.sweep.cli import build_parser as sweep_parser

    out = []
    play = play_parser()
    out.append(("diamond-kedro play", _help(play)))
    for action in play._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((f"diamond-kedro play {name}", _help(sub)))
    out.append(("diamond-kedro sweep", _help(sweep_parser())))
    import click
    from kedro.framework.cli.project import run as kedro_run

    with click.Context(kedro_run, info_name="kedro run") as ctx:
        out.append(("kedro run", kedro_run.get_help(ctx)))
    return out


def write_cli() -> None:
    with mkdocs_gen_files.open("reference/cli.md", "w") as f:
        f.write("# Command line\n\n*Generated at build time from the commands' own `--help`.* "
                "`diamond-kedro <args>` and `python -m diamond_kedro <args>` are the same; any arguments other "
                "than `play` and `sweep` are those of `kedro run`.\n\n")
        for title, text in cli_helps():
            f.write(f"## `{title}`\n\n```text\n{text.rstrip()}\n```\n\n")


def write_api() -> None:
    with mkdocs_gen_files.open("reference/api/index.md", "w") as f:
        f.write("# API\n\n*Generated from the docstrings.* The library under `src/diamond_kedro/` is plain "
                "PyTorch: notebooks, tests and scripts use the same code as the Kedro nodes.\n\n")
        for module in API_MODULES:
            f.write(f"* [`{module}`]({module}.md)\n")
    for module in API_MODULES:
        with mkdocs_gen_files.open(f"reference/api/{module}.md", "w") as f:
            f.write(f"# `{module}`\n\n::: {module}\n")


def main() -> None:
    write_configuration()
    write_pipelines()
    write_cli()
    write_api()


main()
