"""`--help` documents every config field from config.py, and every subcommand says what it is."""

import argparse
import dataclasses

import pytest

from ganforge.cli import build_parser
from ganforge.config import Config
from ganforge.fielddocs import field_docs


def help_of(*command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    return capsys.readouterr().out


def expected_default(f: dataclasses.Field) -> str:
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if isinstance(value, list):
        return ",".join(map(str, value))
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_every_config_field_is_in_help_with_its_default_and_doc(command, capsys):
    text = help_of(command, capsys=capsys)
    flat = " ".join(text.split())  # the help wraps lines; compare with whitespace folded
    lines = text.splitlines()
    for f in dataclasses.fields(Config):
        entry = [ln.strip() for ln in lines if ln.startswith(f"    {f.name} (")]
        assert len(entry) == 1, f.name
        assert entry[0].endswith(f", default {expected_default(f)})"), entry
        doc = field_docs()[f.name].doc
        assert doc and " ".join(doc.split()) in flat, f.name


def test_docs_are_the_comments_beside_the_fields():
    docs = field_docs()
    assert docs["ema"].doc.startswith("generator EMA half-life in iterations")
    assert docs["g_betas"].doc == "G's Adam betas (beta1, beta2)"  # a `#:` line above
    assert docs["gp_lambda"].section == "objective and optimisation"
    assert list(docs) == [f.name for f in dataclasses.fields(Config)]


def test_choices_come_from_the_registries_and_presets_are_listed(capsys):
    from ganforge.data import DATASETS
    from ganforge.losses import OBJECTIVES
    from ganforge.models import MODELS
    from ganforge.presets import PRESETS

    flat = " ".join(help_of("train", capsys=capsys).split())
    for registry in (OBJECTIVES, MODELS, DATASETS):
        assert f"[choices: {', '.join(registry.names())}]" in flat
    for name in PRESETS:
        assert " ".join(PRESETS.doc(name).split()) in flat, name
    # a named flag carries the same doc and default as its field
    assert "--batch-size N real (and generated) samples per D step [default: 128]" in flat


def test_every_subcommand_has_a_description():
    def walk(parser: argparse.ArgumentParser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield f"{parser.prog} {name}", sub
                    yield from walk(sub)

    missing = [name for name, sub in walk(build_parser()) if not sub.description]
    assert not missing, missing
