import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sparks.probes.openings import sample_openings
from sparks.probes.schemes import pair_prompt, style_pairs
from sparks.tasks import arith

QUESTIONS = [problem.question for problem in arith.problems("probe", [1, 2, 3], 5, seed=0)]


@pytest.fixture(scope="module")
def base(base_model_dir, device):
    return AutoModelForCausalLM.from_pretrained(base_model_dir).to(device), AutoTokenizer.from_pretrained(base_model_dir)


def test_greedy_openings_are_the_models_own_continuation(base):
    model, tokenizer = base
    openings = sample_openings(model, tokenizer, QUESTIONS, tokens=6, batch_size=2)
    assert len(openings) == len(QUESTIONS) and all(openings)
    for question, opening in zip(QUESTIONS, openings):
        prompt = tokenizer(pair_prompt(tokenizer, question, None), return_tensors="pt", add_special_tokens=False).to(model.device)
        alone = model.generate(**prompt, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = alone[0, prompt["input_ids"].shape[1] :].tolist()
        assert tokenizer.decode(new).startswith(opening)


def test_seeded_sampling_repeats_and_leaves_the_rng_and_mode_alone(base):
    model, tokenizer = base
    model.train()
    state = torch.get_rng_state()
    first = sample_openings(model, tokenizer, QUESTIONS, tokens=8, seed=3)
    assert torch.equal(torch.get_rng_state(), state) and model.training
    assert sample_openings(model, tokenizer, QUESTIONS, tokens=8, seed=3) == first
    others = [sample_openings(model, tokenizer, QUESTIONS, tokens=8, seed=seed) for seed in (4, 5, 6)]
    assert any(other != first for other in others)
    model.eval()


def test_sampled_openings_make_aligned_style_pairs(base, random_model_dir):
    model, tokenizer = base
    reasoning_model = AutoModelForCausalLM.from_pretrained(random_model_dir).to(model.device)
    reasoning = sample_openings(reasoning_model, tokenizer, QUESTIONS, tokens=8)
    baseline = sample_openings(model, tokenizer, QUESTIONS, tokens=8)
    assert reasoning != baseline
    pairs = style_pairs(tokenizer, QUESTIONS, reasoning, baseline, opening_tokens=3)
    assert pairs
    for pair in pairs:
        assert len(pair.clean_ids) == len(pair.corrupted_ids) and len(pair.targets) == 3


def test_bad_token_count_is_an_error(base):
    with pytest.raises(ValueError, match="tokens must be >= 1"):
        sample_openings(*base, QUESTIONS, tokens=0)
