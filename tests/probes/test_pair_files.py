import json
import re
from dataclasses import replace

import pytest
import torch
from tokenizers import pre_tokenizers
from transformers import Qwen2Tokenizer

from sparks.probes.pairs import Pair, batch_pairs, batches, load_pairs, pad_pairs, save_pairs
from sparks.probes.schemes import arith_style_pairs, numbers_pairs
from sparks.tasks import arith
from sparks.tasks.tokenizer import build_tokenizer


def _pair(clean, corrupted, targets, answers=None, **meta):
    return Pair("c", "x", clean, corrupted, targets, answers, None if answers is None else [a + 1 for a in answers], meta)


def test_pad_pairs_shifts_targets_by_the_padding():
    batch = pad_pairs([[5, 6, 7, 8], [8, 9]], [[5, 1, 7, 8], [2, 9]], pad_id=0, targets=[[2, 3], [0, 1]],
                      clean_answers=[[1, 2], [3, 4]], corrupted_answers=[[5, 6], [7, 8]])
    assert batch.target_positions.tolist() == [[2, 3], [2, 3]]
    assert batch.clean_ids.tolist() == [[5, 6, 7, 8], [0, 0, 8, 9]]
    assert batch.corrupted_answer_ids.tolist() == [[5, 6], [7, 8]]
    with pytest.raises(ValueError, match="same number of target positions"):
        pad_pairs([[1, 2], [3, 4]], [[1, 2], [3, 4]], pad_id=0, targets=[[0, 1], [1]])
    with pytest.raises(ValueError, match=r"pair 1: target positions \[2\] outside its 2 tokens"):
        pad_pairs([[1, 2], [3, 4]], [[1, 2], [3, 4]], pad_id=0, targets=[[1], [2]])


def test_jsonl_round_trip_and_batches(tmp_path):
    pairs = [_pair([1, 2, 3], [1, 4, 3], [2], [7], level=1), _pair([5, 6], [5, 7], [1], [8], level=2),
             _pair([9, 9, 9, 9], [9, 8, 9, 9], [3], [9], level=3)]
    path = tmp_path / "sub" / "pairs.jsonl"
    save_pairs(pairs, path)
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[1])["meta"] == {"level": 2}
    loaded = load_pairs(path)
    assert loaded == pairs
    first, second = batches(loaded, pad_id=0, batch_size=2)
    assert first.clean_ids.tolist() == [[1, 2, 3], [0, 5, 6]] and first.target_positions.tolist() == [[2], [2]]
    assert first.corrupted_answer_ids.tolist() == [[8], [9]]
    assert second.batch_size == 1 and second.clean_ids.shape == (1, 4)
    no_answers = batch_pairs([_pair([1, 2], [1, 3], [1]), loaded[1]], pad_id=0)
    assert no_answers.clean_answer_ids is None and torch.equal(no_answers.attention_mask, torch.ones(2, 2, dtype=torch.long))


@pytest.mark.parametrize(
    "record, message",
    [
        ({"clean_ids": [1, 2, 3], "corrupted_ids": [1, 2], "targets": [1]}, "clean has 3 tokens, corrupted has 2"),
        ({"clean_ids": [1, 2], "corrupted_ids": [1, 3], "targets": [2]}, "must be positions in its 2 tokens"),
        ({"clean_ids": [1, 2], "corrupted_ids": [1, 3], "targets": []}, "must be positions"),
        ({"clean_ids": [1, 2], "corrupted_ids": [1, 3], "targets": [1], "clean_answer_ids": [1, 2]}, "2 clean_answer_ids for 1 targets"),
        ({"clean_ids": [1, 2], "corrupted_ids": [1, 3]}, "a pair needs clean_ids, corrupted_ids and targets"),
        ({"clean_ids": [1, 2], "corrupted_ids": [1, 3], "targets": [1], "colour": "red"}, "nothing but"),
        ({"clean_ids": [], "corrupted_ids": [], "targets": [0]}, "empty pair"),
    ],
)
@pytest.mark.hostile
def test_load_pairs_errors_name_the_line(tmp_path, record, message):
    path = tmp_path / "pairs.jsonl"
    good = {"clean_ids": [1], "corrupted_ids": [2], "targets": [0]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=message) as error:
        load_pairs(path)
    assert f"{path}:2:" in str(error.value)


@pytest.mark.hostile
def test_load_pairs_empty_missing_and_not_json(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no pairs"):
        load_pairs(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pairs(tmp_path / "missing.jsonl")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: not JSON"):
        load_pairs(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="batch_size"):
        next(batches([_pair([1], [2], [0])], pad_id=0, batch_size=0))


@pytest.mark.hostile
def test_load_pairs_names_a_file_that_is_not_text_and_a_directory(tmp_path):
    binary = tmp_path / "pairs.jsonl"
    binary.write_bytes(b'{"clean_ids": [5], "corrupted_ids": [6], "targets": [0]}\n\xa0\xff\n')
    with pytest.raises(ValueError, match=_exactly(f"{binary}:2: not UTF-8 text; a pair file is text")):
        load_pairs(binary)
    folder = tmp_path / "pairs"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=_exactly(f"pair file {folder} is a directory, not a file")):
        load_pairs(folder)


GOOD = {"clean_ids": [5, 6], "corrupted_ids": [5, 7], "targets": [1]}


def _exactly(message: str) -> str:
    """A pattern matching ``message`` and nothing more (one line, nothing around it)."""
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"clean_ids": [5, 6.0]}, "clean_ids: item 1 is 6.0, not an integer"),
        ({"corrupted_ids": ["5", 7]}, 'corrupted_ids: item 0 is "5", not an integer'),
        ({"clean_ids": [True, 6]}, "clean_ids: item 0 is true, not an integer"),
        ({"targets": [1.0]}, "targets: item 0 is 1.0, not an integer"),
        ({"targets": 1}, "targets: must be a list of integers, got a number"),
        ({"clean_ids": "5 6"}, "clean_ids: must be a list of integers, got a string"),
        ({"clean_answer_ids": {"a": 1}}, "clean_answer_ids: must be a list of integers, got an object"),
        ({"corrupted_answer_ids": [-3]}, "corrupted_answer_ids: id -3 is negative"),
        ({"clean_ids": [-1, 6], "corrupted_ids": [-1, 7]}, "clean_ids: id -1 is negative"),
        ({"clean_text": 5}, "clean_text: must be a string, got a number"),
        ({"corrupted_text": None}, "corrupted_text: must be a string, got null"),
        ({"meta": ["level", 1]}, "meta: must be an object, got an array"),
        ({"corrupted_ids": [5, 6]}, "corrupted_ids: clean and corrupted are identical; the pair has nothing to patch"),
    ],
)
@pytest.mark.hostile
def test_load_pairs_refuses_mistyped_fields_naming_line_and_field(tmp_path, change, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD | change) + "\n")
    with pytest.raises(ValueError, match=_exactly(f"{path}:2: {message}")):
        load_pairs(path)


@pytest.mark.parametrize("row, kind", [([1, 2, 3], "an array"), (7, "a number"), ("pair", "a string"), (None, "null")])
@pytest.mark.hostile
def test_load_pairs_refuses_rows_that_are_not_objects(tmp_path, row, kind):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=_exactly(f"{path}:2: a pair must be a JSON object, got {kind}")):
        load_pairs(path)


@pytest.mark.parametrize("field", ["clean_ids", "corrupted_ids", "clean_answer_ids", "corrupted_answer_ids"])
@pytest.mark.hostile
def test_load_pairs_with_vocab_size_refuses_ids_outside_it(tmp_path, field):
    row = GOOD | {"clean_answer_ids": [8], "corrupted_answer_ids": [9]}
    bad = row | {field: row[field][:-1] + [259]}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps(bad) + "\n")
    assert load_pairs(path, vocab_size=260)[1] == Pair("", "", **bad)
    with pytest.raises(ValueError, match=_exactly(f"{path}:2: {field}: id 259 is outside the model's vocabulary of 259 tokens")):
        load_pairs(path, vocab_size=259)


@pytest.mark.hostile
def test_load_pairs_with_a_tokenizer_refuses_ids_of_another_tokenizer(tmp_path):
    world = build_tokenizer()
    # byte tokens numbered backwards and no tags: the same files decode to other texts
    other = Qwen2Tokenizer(vocab={token: index for index, token in enumerate(
        ("<|endoftext|>", *sorted(pre_tokenizers.ByteLevel.alphabet(), reverse=True)))}, merges=[], unk_token=None)
    problems = arith.problems("probe", [1, 2], 3, 0)
    path = tmp_path / "pairs.jsonl"
    made = numbers_pairs(world, problems) + arith_style_pairs(world, problems)
    save_pairs([Pair("", "", [9, 8], [9, 7], [1])] + made, path)
    assert load_pairs(path, tokenizer=world) == load_pairs(path) == [Pair("", "", [9, 8], [9, 7], [1])] + made
    expected = f"{path}:2: clean_ids: not this tokenizer's encoding of clean_text (made with another tokenizer?)"
    with pytest.raises(ValueError, match=_exactly(expected)):
        load_pairs(path, tokenizer=other)
    shifted = made[0].corrupted_ids[:-1] + [made[0].corrupted_ids[-1] + 1]
    save_pairs([replace(made[0], corrupted_ids=shifted)], path)
    expected = f"{path}:1: corrupted_ids: not this tokenizer's encoding of corrupted_text (made with another tokenizer?)"
    with pytest.raises(ValueError, match=_exactly(expected)):
        load_pairs(path, tokenizer=world)


def test_a_pair_file_is_parsed_once_for_all_its_readers_and_again_when_it_changes(tmp_path):
    """The tracker's settings check a pair file, then the tracker reads it against the model: one parse.
    A file rewritten in place (same length, same second) is read as it now is."""
    from sparks.callbacks.config import TrackerConfig
    from sparks.probes import pairs as pair_module

    tokenizer = build_tokenizer()
    built = numbers_pairs(tokenizer, arith.problems("probe", [1, 2], 4, seed=0, fill=True), seed=0)
    path = tmp_path / "pairs.jsonl"
    save_pairs(built, path)
    pair_module._parsed.cache_clear()
    config = TrackerConfig(pairs=str(path))
    assert config.probe_set.build(tokenizer, len(tokenizer)) == built
    assert load_pairs(path, vocab_size=len(tokenizer), tokenizer=tokenizer) == built
    assert pair_module._parsed.cache_info().misses == 1
    swapped = [replace(pair, meta={"which": "other"}) for pair in built]  # the same pairs, other metadata
    save_pairs(swapped, path)
    assert load_pairs(path) == swapped and pair_module._parsed.cache_info().misses == 2
