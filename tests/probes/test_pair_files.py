import json

import pytest
import torch

from probes.pairs import Pair, batch_pairs, batches, load_pairs, pad_pairs, save_pairs


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
def test_load_pairs_errors_name_the_line(tmp_path, record, message):
    path = tmp_path / "pairs.jsonl"
    good = {"clean_ids": [1], "corrupted_ids": [2], "targets": [0]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=message) as error:
        load_pairs(path)
    assert f"{path}:2:" in str(error.value)


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
