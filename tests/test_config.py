import json

import pytest

from ganforge.config import Config, parse_set, read_config_file, resolve
from ganforge.errors import GanforgeError
from ganforge.presets import PRESETS


def test_default_preset_is_the_classic_gan():
    cfg = resolve()
    assert (cfg.preset, cfg.dataset, cfg.model, cfg.z_dim, cfg.g_hidden, cfg.d_hidden) == (
        "mlp-mnist", "mnist", "mlp", 100, 128, 128)
    assert (cfg.init, cfg.prior, cfg.objective, cfg.batch_size) == (
        "he-normal", "uniform", "nonsaturating", 128)
    assert (cfg.g_lr, cfg.d_lr, cfg.g_betas, cfg.k_d, cfg.k_g) == (1e-3, 1e-3, [0.9, 0.999], 1, 1)


def test_tutorial_presets():
    nb = resolve("mlp-mnist-notebook")
    assert (nb.g_hidden, nb.d_hidden, nb.batch_size, nb.g_lr, nb.d_lr, nb.k_d, nb.k_g,
            nb.steps, nb.init) == (512, 256, 256, 2e-5, 2e-5, 1, 2, 20_000, "xavier")
    sat = resolve("mlp-mnist-saturating")
    assert (sat.init, sat.prior, sat.batch_size, sat.objective) == (
        "normal0.01", "normal", 32, "minimax")
    toy = resolve("toy-1d")
    assert (toy.dataset, toy.model, toy.objective) == ("gaussian-1d", "mlp-1d", "minimax")


def test_every_preset_resolves_and_has_a_description():
    for name in PRESETS:
        assert resolve(name).preset == name
        assert PRESETS.doc(name)


def test_set_parses_by_field_type():
    got = parse_set(["g_lr=2e-4", "steps=1_000", "g_betas=0.5,0.99", "data_dir=none",
                     "objective=minimax"])
    assert got == {"g_lr": 2e-4, "steps": 1000, "g_betas": [0.5, 0.99], "data_dir": None,
                   "objective": "minimax"}


@pytest.mark.parametrize("item, msg", [
    ("nosuch=1", "unknown config field 'nosuch'"),
    ("steps=ten", "'steps': expected int"),
    ("g_lr", "expected key=value"),
])
def test_set_errors_are_one_line(item, msg):
    with pytest.raises(GanforgeError, match=msg) as e:
        parse_set([item])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("field, value, flag", [
    ("steps", 0, "--steps"), ("batch_size", -1, "--batch-size"), ("g_lr", 0.0, "--g-lr"),
])
def test_non_positive_values_name_the_option(field, value, flag):
    with pytest.raises(GanforgeError, match=f"{flag} must be positive"):
        resolve(overrides={field: value})


def test_precedence_preset_then_file_then_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('preset = "mlp-mnist-notebook"\nsteps = 7\nbatch_size = 64\n')
    fields = read_config_file(f)
    cfg = resolve(fields.get("preset"), fields, {"batch_size": 32})
    assert (cfg.preset, cfg.g_hidden, cfg.steps, cfg.batch_size) == (
        "mlp-mnist-notebook", 512, 7, 32)


def test_json_config_and_unknown_key(tmp_path):
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"steps": 5, "g_betas": [0.5, 0.9]}))
    assert read_config_file(good) == {"steps": 5, "g_betas": [0.5, 0.9]}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stepz": 5}))
    with pytest.raises(GanforgeError, match=r"bad.json: unknown config field\(s\) 'stepz'"):
        read_config_file(bad)


@pytest.mark.parametrize("text, msg", [
    ('steps = "many"', "'steps': expected int"),
    ("steps = 3.5", "'steps': expected int"),
    ("steps = [", "not valid TOML"),
])
def test_config_file_type_errors_name_the_file(tmp_path, text, msg):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(GanforgeError, match=msg) as e:
        read_config_file(f)
    assert str(f) in str(e.value)


def test_config_round_trips_through_its_dict():
    from ganforge.config import from_dict

    cfg = resolve("toy-1d", overrides={"seed": 3})
    assert from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert isinstance(cfg, Config)
