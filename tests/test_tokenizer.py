"""The built-in tokenizer and its chat template survive save/load; thinking on and off read as expected."""

from transformers import AutoModelForCausalLM, AutoTokenizer

from sparks.tasks.tokenizer import build_tokenizer

QUESTION = [{"role": "user", "content": "12+7*3"}]


def test_round_trip_through_save_and_load(tmp_path):
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "<|im_start|>user\n12+7*3<|im_end|>\n<|im_start|>assistant\n<think>\n7*3=21\n</think>\n<answer>33</answer>"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.decode(loaded(text)["input_ids"]) == text
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert (loaded.pad_token, loaded.eos_token, loaded.padding_side) == ("<|endoftext|>", "<|im_end|>", "left")
    for thinking in (True, False):
        kwargs = dict(tokenize=False, add_generation_prompt=True, enable_thinking=thinking)
        assert loaded.apply_chat_template(QUESTION, **kwargs) == tokenizer.apply_chat_template(QUESTION, **kwargs)


def test_one_token_per_character_and_per_tag():
    tokenizer = build_tokenizer()
    ids = tokenizer("<think>\n12+3=15\n</think>", add_special_tokens=False)["input_ids"]
    assert len(ids) == 1 + 1 + 7 + 1 + 1
    assert tokenizer.convert_ids_to_tokens(ids)[0] == "<think>"
    assert tokenizer.decode(tokenizer("héllo, wörld €")["input_ids"]) == "héllo, wörld €"


def test_tags_survive_skipping_special_tokens():
    tokenizer = build_tokenizer()
    ids = tokenizer("<think>\n1+1=2\n</think>\n<answer>2</answer><|im_end|>")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\n1+1=2\n</think>\n<answer>2</answer>"


def test_thinking_on_and_off_prompts():
    tokenizer = build_tokenizer()
    on = tokenizer.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    off = tokenizer.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    default = tokenizer.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    assert on == default == "<|im_start|>user\n12+7*3<|im_end|>\n<|im_start|>assistant\n"
    assert off == on + "<think>\n\n</think>\n"
    with_system = [{"role": "system", "content": "Be brief."}, *QUESTION]
    assert tokenizer.apply_chat_template(with_system, tokenize=False).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")


def test_model_and_tokenizer_load_back_from_one_directory(random_model_dir):
    # Beside a Qwen2 config, AutoTokenizer picks Qwen2Tokenizer: it must still read text one character at a time.
    tokenizer = AutoTokenizer.from_pretrained(random_model_dir)
    text = "<|im_start|>assistant\n<think>\n2 + 3=5\n</think>\n<answer>5</answer><|im_end|>"
    assert tokenizer(text)["input_ids"] == build_tokenizer()(text)["input_ids"]
    assert len(tokenizer(text)["input_ids"]) == 1 + len("assistant\n") + 1 + len("\n2 + 3=5\n") + 1 + 1 + 1 + 1 + 1 + 1
    model = AutoModelForCausalLM.from_pretrained(random_model_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.num_attention_heads > model.config.num_key_value_heads
    assert model.config.vocab_size >= len(tokenizer)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
