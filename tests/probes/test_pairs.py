import pytest
import torch

from sparks.probes.pairs import PairBatch, pad_pairs


def test_pad_pairs_left_pads_and_targets_last():
    batch = pad_pairs([[5, 6, 7], [8, 9]], [[5, 1, 7], [2, 9]], pad_id=0, clean_answers=[3, 4], corrupted_answers=[1, 2])
    assert batch.clean_ids.tolist() == [[5, 6, 7], [0, 8, 9]]
    assert batch.corrupted_ids.tolist() == [[5, 1, 7], [0, 2, 9]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert batch.target_positions.tolist() == [[2], [2]]
    assert batch.clean_answer_ids.tolist() == [[3], [4]]
    assert batch.batch_size == 2



def test_changed_positions_start_at_each_rows_first_difference():
    batch = pad_pairs([[5, 6, 7, 8], [8, 9, 4]], [[5, 6, 1, 8], [8, 2, 4]], pad_id=0)
    assert batch.changed.tolist() == [[False, False, True, True], [False, False, True, True]]
    assert batch.first_change == 2
    same = pad_pairs([[5, 6]], [[5, 6]], pad_id=0)
    assert not same.changed.any() and same.first_change == 2


@pytest.mark.parametrize(
    "clean, corrupted, message",
    [
        ([[1, 2, 3]], [[1, 2]], "pair 0: clean has 3 tokens, corrupted has 2"),
        ([], [], "no pairs"),
        ([[1]], [[1], [2]], "1 clean prompts but 2 corrupted"),
        ([[1], []], [[1], []], "pair 1 is empty"),
    ],
)
def test_pad_pairs_errors(clean, corrupted, message):
    with pytest.raises(ValueError, match=message):
        pad_pairs(clean, corrupted, pad_id=0)


def test_pad_pairs_answer_count():
    with pytest.raises(ValueError, match="1 clean_answers for 2 pairs"):
        pad_pairs([[1], [2]], [[3], [4]], pad_id=0, clean_answers=[1])


def _batch(**changes):
    fields = dict(
        clean_ids=torch.ones(2, 4, dtype=torch.long),
        corrupted_ids=torch.ones(2, 4, dtype=torch.long),
        attention_mask=torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]),
        target_positions=torch.tensor([3, 3]),
    )
    return PairBatch(**(fields | changes))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(corrupted_ids=torch.ones(2, 5, dtype=torch.long)), "corrupted_ids has shape"),
        (dict(attention_mask=torch.ones(2, 3, dtype=torch.long)), "attention_mask has shape"),
        (dict(clean_ids=torch.ones(0, 4, dtype=torch.long), corrupted_ids=torch.ones(0, 4, dtype=torch.long)), "empty"),
        (dict(attention_mask=torch.tensor([[1, 1, 0, 1], [1, 1, 1, 1]])), "left-padded"),
        (dict(attention_mask=torch.tensor([[0, 2, 1, 1], [1, 1, 1, 1]])), "only 0 and 1"),
        (dict(target_positions=torch.tensor([0, 3])), "points at padding"),
        (dict(target_positions=torch.tensor([4, 3])), "must lie in"),
        (dict(target_positions=torch.tensor([3])), "target_positions must be"),
        (dict(clean_answer_ids=torch.tensor([[1, 2], [3, 4]])), "clean_answer_ids has shape"),
    ],
)
def test_pair_batch_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        _batch(**changes)


def test_pair_batch_multiple_targets():
    batch = _batch(target_positions=torch.tensor([[2, 3], [1, 3]]), clean_answer_ids=torch.tensor([[1, 2], [3, 4]]))
    assert batch.target_positions.shape == (2, 2)
    assert batch.to("cpu").clean_answer_ids.tolist() == [[1, 2], [3, 4]]
