import pytest
import torch

from sparks.probes.metrics import answer_logprob, get_metric, kl_divergence, logit_diff


def test_kl_divergence_per_example():
    clean = torch.randn(3, 2, 10, dtype=torch.float64)
    run = clean.clone()
    run[1] += torch.randn(2, 10, dtype=torch.float64)
    kl = kl_divergence(run, clean)
    assert kl.shape == (3,)
    assert kl[0] == 0 and kl[2] == 0 and kl[1] > 0
    p, q = clean[1].softmax(-1), run[1].softmax(-1)
    assert torch.allclose(kl[1], (p * (p / q).log()).sum(-1).mean())
    assert torch.allclose(kl_divergence(run + 3.0, clean), kl)


def test_logit_diff_and_logprob():
    logits = torch.tensor([[[1.0, 2.0, 4.0]], [[0.0, 5.0, 1.0]]])
    assert logit_diff(logits, torch.tensor([[2], [1]]), torch.tensor([[0], [2]])).tolist() == [3.0, 4.0]
    expected = torch.log_softmax(logits, -1)[:, 0, 1]
    assert torch.allclose(answer_logprob(logits, torch.tensor([[1], [1]])), expected)


@pytest.mark.parametrize("name", ["kl", "logit_diff", "logprob"])
def test_effects_are_zero_on_the_clean_run(name):
    clean = torch.randn(4, 1, 10)
    answers = torch.stack([torch.tensor([[1], [2], [3], [4]]), torch.tensor([[5], [6], [7], [8]])])
    metric = get_metric(name)
    assert torch.equal(metric(clean, clean, answers[0], answers[1]), torch.zeros(4))
    # damaging the clean answer is a positive effect for every metric
    damaged = clean.clone()
    damaged.scatter_(-1, answers[0].unsqueeze(-1), -100.0)
    if name != "kl":
        damaged.scatter_(-1, answers[1].unsqueeze(-1), 100.0)
    assert (metric(damaged, clean, answers[0], answers[1]) > 0).all()


def test_metric_errors():
    with pytest.raises(ValueError, match="unknown metric"):
        get_metric("accuracy")
    with pytest.raises(ValueError, match="needs answer token ids"):
        get_metric("logit_diff")(torch.zeros(1, 1, 3), torch.zeros(1, 1, 3), None, None)
