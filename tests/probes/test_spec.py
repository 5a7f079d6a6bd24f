"""The scoring spec (probes.spec): one declaration of each setting, read alike by every reader."""

import argparse

import pytest

from sparks.callbacks.config import DRAW_SETTINGS, LINEAGE_SETTINGS, RESCORE_SETTINGS, TrackerConfig
from sparks.probes.spec import ScoringSpec, add_flags, from_flags

BAD = {"method": "patching", "level": "layer", "metric": "l2", "ig_steps": 0, "ig_rule": "trapezoid", "batch_size": -1,
       "chunk_size": 0, "aggregation": "median", "mass": 1.5, "top_n": 0, "tau": -0.1, "replicates": 1, "confidence": 0.5}
"""A value each setting with a rule refuses."""


def test_what_defines_a_lineage_and_what_a_rescore_changes_are_declared_by_the_fields():
    assert set(LINEAGE_SETTINGS) == {"every", "method", "level", "metric", "ig_steps", "ig_rule", "pairs", "scheme",
                                     "num_problems", "levels", "seed", "mass", "top_n", "tau", "aggregation", "replicates",
                                     "confidence"}
    assert set(RESCORE_SETTINGS) == {"method", "level", "metric", "ig_steps", "ig_rule", "num_problems", "mass", "top_n",
                                     "tau", "aggregation", "replicates", "confidence", "batch_size", "chunk_size"}
    assert DRAW_SETTINGS == ("num_problems",)


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_is_refused_with_the_same_words_in_a_recipe_and_on_the_command_line(name):
    with pytest.raises(ValueError) as in_recipe:
        TrackerConfig(**{name: BAD[name]})
    recipe_line = str(in_recipe.value)
    assert recipe_line.startswith(f"tracker.{name}: ")
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_flags(parser, [name])
    flag = "--" + name.replace("_", "-")
    with pytest.raises(argparse.ArgumentError) as on_command_line:
        parser.parse_args([flag, str(BAD[name])])
    why = recipe_line.removeprefix(f"tracker.{name}: ")
    if name in ("method", "level", "metric", "ig_rule", "aggregation"):  # argparse lists the choices itself
        assert f"invalid choice: '{BAD[name]}'" in str(on_command_line.value)
    else:
        assert str(on_command_line.value) == f"argument {flag}: {why}"


def test_a_combination_is_refused_naming_every_setting_in_it():
    with pytest.raises(ValueError, match=r"^tracker.method, tracker.metric: eap with kl scores exactly zero"):
        TrackerConfig(method="eap", metric="kl")
    args = argparse.Namespace(method="eap", metric="kl")
    with pytest.raises(ValueError, match=r"^--method, --metric: eap with kl scores exactly zero"):
        from_flags(args, ["method", "metric"])
    assert from_flags(argparse.Namespace(method="eap"), ["method"], metric="logit_diff").method == "eap"


def test_the_tracker_config_is_a_spec_with_the_same_defaults():
    spec, config = ScoringSpec(), TrackerConfig()
    assert isinstance(config, ScoringSpec)
    assert {name: getattr(config, name) for name in vars(spec)} == vars(spec)
    assert config.selection == spec.selection
