"""Command-line flags generated from the configuration dataclasses: a knob is declared once, as a field
with ``setting(default, help)``, and appears as ``--field-name`` with that type, default and help. Flags
default to None (not given), so ``PipelineConfig.from_options`` fills every missing one from its field."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Iterable, Iterator, List

from ondevice_rec.components.history_windowing.windowing import WindowingOptions
from ondevice_rec.components.tflite_pusher.options import PublishOptions
from ondevice_rec.modules.config import DEFAULT_PRESET, PRESETS, ModelConfig
from ondevice_rec.pipeline.config import PipelineConfig

PIPELINE_OPTION_CLASSES = (ModelConfig, WindowingOptions, PublishOptions, PipelineConfig)


def flag_fields(kinds: Iterable[type] = PIPELINE_OPTION_CLASSES) -> Iterator[dataclasses.Field]:
    """The fields that are command-line flags (declared with ``setting`` and ``flag=True``)."""
    for kind in kinds:
        for field in dataclasses.fields(kind):
            if field.metadata.get("flag") and field.metadata.get("help"):
                yield field


def _type(field: dataclasses.Field):
    annotation = str(field.type)
    for name, kind in (("bool", bool), ("float", float), ("int", int), ("str", str)):
        if name in annotation:
            return kind
    raise TypeError(f"no command-line type for {field.name}: {annotation}")


def flag_name(field: dataclasses.Field) -> str:
    return "--" + field.name.replace("_", "-")


def _add_field_flags(parser: argparse.ArgumentParser, kinds: Iterable[type], skip: Iterable[str] = ()) -> None:
    for field in flag_fields(kinds):
        if field.name in skip:
            continue
        help_text = field.metadata["help"].replace("%", "%%")
        if field.default is not None:
            help_text += f" (default: {field.default})"
        parser.add_argument(flag_name(field), dest=field.name, type=_type(field), default=None,
                            choices=list(field.metadata["choices"]) if field.metadata.get("choices") else None,
                            help=help_text)


def add_model_flags(parser: argparse.ArgumentParser, skip: Iterable[str] = (),
                    hparam_help: str = "") -> None:
    """One flag per ModelConfig knob (those in ``skip`` left out), ``--preset`` and ``--hparam``: what ``run``
    trains, and what a benchmark that trains models takes."""
    _add_field_flags(parser, (ModelConfig,), skip)
    parser.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET,
                        help="named model settings (modules/config.py PRESETS; flags given beside it win): "
                             + "; ".join(f"{name}: {', '.join(f'{k}={v}' for k, v in values.items()) or 'as listed here'}"
                                         for name, values in PRESETS.items()))
    parser.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                        help=hparam_help or "any model setting of modules/config.py:ModelConfig, e.g. --hparam "
                                            "tie_embeddings=true --hparam transformer_blocks=3 (repeatable)")


def add_flags(parser: argparse.ArgumentParser, kinds: Iterable[type] = PIPELINE_OPTION_CLASSES) -> None:
    """Adds one flag per knob of ``kinds`` (``add_model_flags`` for the model's), plus ``--beam-arg`` and
    ``--flink-master``."""
    add_model_flags(parser)
    _add_field_flags(parser, [kind for kind in kinds if kind is not ModelConfig])
    parser.add_argument("--beam-arg", dest="beam_args", action="append", default=[], metavar="ARG",
                        help="passed to every Beam stage, e.g. --beam-arg=--direct_num_workers=2 (repeatable)")
    parser.add_argument("--flink-master", default=None, metavar="HOST:PORT",
                        help="run every Beam stage on the Flink cluster whose JobManager REST API is HOST:PORT "
                             "(e.g. localhost:8081 after 'ondevice-rec flink up'), one task per slot")


def model_from_args(args: argparse.Namespace, **given) -> ModelConfig:
    """The ModelConfig ``add_model_flags``' flags describe: the preset, the flags given, ``given``, then the
    ``--hparam``s (those without an ``ENCODER:`` prefix)."""
    flags = {f.name: getattr(args, f.name) for f in flag_fields((ModelConfig,)) if getattr(args, f.name, None)
             is not None}
    plain = [h for h in args.hparam if ":" not in h.partition("=")[0]]
    return ModelConfig.preset(args.preset, **{**flags, **given}).with_overrides(plain)


def options_of(args: argparse.Namespace) -> dict:
    """The knobs a parsed command line gave (None: not given)."""
    return {field.name: getattr(args, field.name, None) for field in flag_fields()}


def config_from_args(args: argparse.Namespace, data_dir: str, output_dir: str, **settings) -> PipelineConfig:
    """``PipelineConfig.from_options`` on the flags of ``add_flags``."""
    return PipelineConfig.from_options(data_dir, output_dir, options_of(args), hparams=args.hparam,
                                       preset=args.preset, beam_args=engine_args(args) + list(args.beam_args),
                                       **settings)


def engine_args(args: argparse.Namespace) -> List[str]:
    """The Beam arguments of ``--flink-master`` (none without it: the local DirectRunner)."""
    if not getattr(args, "flink_master", None):
        return []
    from ondevice_rec.pipeline import flink
    return flink.beam_args(args.flink_master)
