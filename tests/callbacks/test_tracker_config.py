"""The tracker's settings: parsed from a recipe section, each bad value named before training."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import get_type_hints

import pytest
import yaml

from sparks.callbacks.config import TrackerConfig, probe_problems_held
from sparks.probes.settings import type_problem


def test_a_recipe_section_and_its_json_text_give_the_same_settings():
    section = {"every": 20, "level": "edge", "levels": [1, 2], "num_problems": 32, "dashboards": "trackio",
               "aggregation": "abs_mean"}
    config = TrackerConfig.from_recipe(section)
    assert (config.every, config.level, config.levels, config.dashboards) == (20, "edge", (1, 2), ("trackio",))
    assert config.selection.aggregation == "abs_mean" and config.selection.level == "edge"
    assert TrackerConfig.from_recipe('{"every": 20, "level": "edge", "levels": [1, 2], "num_problems": 32, "dashboards": "trackio", '
                                     '"aggregation": "abs_mean"}') == config
    assert TrackerConfig.from_recipe(config.as_dict()) == config


def test_defaults_are_node_eap_ig_every_50_steps():
    config = TrackerConfig.from_recipe({})
    assert (config.method, config.level, config.metric, config.ig_steps, config.every) == ("eap-ig", "node", "kl", 5, 50)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"every": -5}, "tracker.every: must be a whole number > 0"),
        ({"every": 2.5}, "tracker.every: must be a whole number, got 2.5 (a float)"),
        ({"ig_steps": 0}, "tracker.ig_steps:"),
        ({"method": "patching"}, "tracker.method: unknown method 'patching'"),
        ({"level": "layer"}, "tracker.level: unknown level 'layer'"),
        ({"metric": "l2"}, "tracker.metric: unknown metric 'l2'"),
        ({"scheme": "words"}, "tracker.scheme: unknown scheme 'words'"),
        ({"method": "exact", "level": "edge"}, "tracker.method: exact edge patching"),
        ({"method": "ceap", "level": "edge"}, "tracker.method: ceap (conductance) scores heads at node level only"),
        ({"levels": [0, 1]}, "tracker.levels:"),
        ({"mass": 1.5}, "tracker.mass: must lie in (0, 1]"),
        ({"tau": -0.1}, "tracker.tau:"),
        ({"dashboards": ["tensorboard"]}, "tracker.dashboards:"),
        ({"hysteresis": {"leave_rank": 8}}, "tracker.hysteresis: retired; every event now carries its bootstrap confidence"),
        ({"method": "eap"}, "tracker.method, tracker.metric: eap with kl scores exactly zero"),
        ({"aggregation": "median"}, "tracker.aggregation: unknown aggregation 'median'"),
        ({"replicates": 1}, "tracker.replicates: needs at least 2"),
        ({"replicates": 0}, "tracker.replicates: must be a whole number > 0"),
        ({"confidence": 0.4}, "tracker.confidence: must lie in (0.5, 1]"),
        ({"pairs": "/no/such/file.jsonl"}, "tracker.pairs: pair file '/no/such/file.jsonl' does not exist"),
        ({"num_problems": 500, "levels": [1]}, "tracker.num_problems: 500 probe problems asked, levels [1] hold only 6"),
        ({"num_problems": 100, "levels": [1, 2]}, "tracker.num_problems: 100 probe problems asked, levels [1, 2] hold only 62"),
        ({"every_steps": 5}, "tracker.every_steps: unknown setting"),
        ("[1, 2]", "tracker: must be a mapping"),
        ("{every: 5", "tracker: not a JSON mapping"),
    ],
)
@pytest.mark.hostile
def test_each_bad_setting_is_named(section, message):
    with pytest.raises(ValueError) as raised:
        TrackerConfig.from_recipe(section)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('{"strict": "false"}', "tracker.strict: must be true or false, got 'false' (a string: write true or false without quotes)"),
        ({"strict": 1}, "tracker.strict: must be true or false, got 1 (a whole number)"),
        ('{"mass": "0.8"}', "tracker.mass: must be a finite number, got '0.8' (a string)"),
        ({"tau": "0.1"}, "tracker.tau: must be a finite number, got '0.1' (a string)"),
        ("tau: 1e-3", "tracker.tau: must be a finite number, got '1e-3' (a string: YAML reads 1e-3 as text; write 1.0e-3)"),
        ({"confidence": "0.9"}, "tracker.confidence: must be a finite number, got '0.9' (a string)"),
        ('{"mass": NaN}', "tracker.mass: must be a finite number, got nan"),
        ("tau: .inf", "tracker.tau: must be a finite number, got inf"),
        ({"max_lag": "3"}, "tracker.max_lag: must be a whole number, got '3' (a string)"),
        ({"max_lag": 2.5}, "tracker.max_lag: must be a whole number, got 2.5 (a float)"),
        ({"every": 2.0}, "tracker.every: must be a whole number, got 2.0 (a float)"),
        ({"every": True}, "tracker.every: must be a whole number, got true (a boolean)"),
        ({"seed": [1]}, "tracker.seed: must be a whole number, got [1] (a list)"),
        ({"chunk_size": 2.5}, "tracker.chunk_size: must be a whole number or null, got 2.5 (a float)"),
        ({"method": 3}, "tracker.method: must be a string, got 3 (a whole number)"),
        ("level: null", "tracker.level: must be a string, got null"),
        ({"group": 5}, "tracker.group: must be a string or null, got 5 (a whole number)"),
        ({"pairs": 5}, "tracker.pairs: must be a string or null, got 5 (a whole number)"),
        ({"levels": "1"}, "tracker.levels: must be a list of whole numbers, got ['1'] (an item is a string)"),
        ({"levels": [1, True]}, "tracker.levels: must be a list of whole numbers, got [1, True] (an item is a boolean)"),
        ({"levels": 2.5}, "tracker.levels: must be a list of whole numbers, got [2.5] (an item is a float)"),
        ({"levels": None}, "tracker.levels: must be a list of whole numbers, got [None] (an item is null)"),
        ({"dashboards": ["trackio", 3]}, "tracker.dashboards: must be a list of strings, got ['trackio', 3] (an item is a whole number)"),
    ],
)
@pytest.mark.hostile
def test_each_setting_of_the_wrong_type_is_named(section, message):
    """JSON text from the command line, YAML text from a recipe, or the mapping either gives: refused, never converted."""
    if isinstance(section, str) and not section.startswith("{"):
        section = yaml.safe_load(section)
    with pytest.raises(ValueError) as raised:
        TrackerConfig.from_recipe(section)
    assert str(raised.value) == message


def test_every_setting_has_its_type_checked():
    """A setting added later is type-checked too: each field's annotation is one the check knows."""
    for item in fields(TrackerConfig):
        assert type_problem(object(), get_type_hints(TrackerConfig)[item.name]) is not None, item.name


def test_the_right_types_pass():
    section = {"strict": True, "mass": 1, "tau": 0, "chunk_size": None, "group": "g", "levels": 6, "num_problems": 8}
    config = TrackerConfig.from_recipe(section)
    assert (config.strict, config.mass, config.tau, config.chunk_size, config.group, config.levels) == (True, 1, 0, None, "g", (6,))


@pytest.mark.hostile
def test_eap_is_refused_with_kl_only():
    assert TrackerConfig(method="eap", metric="logit_diff").method == "eap"
    assert TrackerConfig(method="eap-ig", metric="kl").method == "eap-ig"


@pytest.mark.hostile
def test_the_probe_problems_asked_must_be_there():
    assert TrackerConfig(num_problems=6, levels=(1,)).num_problems == 6  # level 1 (a+b, one digit each) holds 6
    with pytest.raises(ValueError, match=r"^tracker.num_problems: 7 probe problems asked, levels \[1\] hold only 6$"):
        TrackerConfig(num_problems=7, levels=(1,))
    # Level 1's shortfall of an even spread is made up by the other levels.
    assert probe_problems_held((1, 2, 3, 4, 5, 6), 64, 0) == 64


@pytest.mark.hostile
def test_more_probe_problems_than_the_levels_hold_are_refused_without_drawing(monkeypatch):
    from sparks.tasks import arith

    def refuse(*args, **kwargs):
        raise AssertionError("problems were drawn")

    monkeypatch.setattr(arith, "_draw", refuse)  # drawing a hundred million would take minutes
    with pytest.raises(ValueError, match=r"^tracker.num_problems: 100000000 probe problems asked, levels \[1, 2, 3, 4, 5, 6\] "
                                         r"hold only 16056$"):
        TrackerConfig(num_problems=100_000_000)


def pair_row(**changes) -> str:
    row = {"clean_ids": [5, 6, 7], "corrupted_ids": [5, 6, 8], "targets": [2]}
    return json.dumps(row | changes) + "\n"


@pytest.mark.hostile
def test_the_pair_file_is_read_and_checked_before_training(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(pair_row() + pair_row(corrupted_ids=[5, 6, 9]))
    assert TrackerConfig(pairs=str(good), num_problems=500, levels=(1,)).pairs == str(good)  # problems unused
    for name, second_row, field in [
        ("lengths", pair_row(corrupted_ids=[5, 6]), ""),
        ("type", pair_row(clean_ids="5 6 7"), "clean_ids: "),
        ("json", "{not json\n", ""),
    ]:
        bad = tmp_path / f"{name}.jsonl"
        bad.write_text(pair_row() + second_row)
        with pytest.raises(ValueError) as raised:
            TrackerConfig.from_recipe({"pairs": str(bad)})
        message = str(raised.value)
        assert message.startswith(f"tracker.pairs: {bad}:2: {field}") and "\n" not in message, message
