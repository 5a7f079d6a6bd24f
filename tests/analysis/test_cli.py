import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from sparks.analysis.cli import main
from sparks.probes.circuit import Circuit
from sparks.probes.openings import sample_openings
from sparks.probes.pairs import load_pairs
from sparks.tasks import arith


@pytest.fixture(scope="module")
def numbers_file(random_model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "numbers.jsonl"
    assert main(["pairs", "--scheme", "numbers", "--model", str(random_model_dir), "--levels", "1", "2", "4",
                 "--count", "6", "--out", str(path)]) == 0
    return path


def test_pairs_writes_a_loadable_set(numbers_file, random_model_dir, tmp_path, capsys):
    pairs = load_pairs(numbers_file)
    assert len(pairs) == 6 and {pair.meta["level"] for pair in pairs} == {1, 2, 4}
    assert all(len(pair.clean_ids) == len(pair.corrupted_ids) for pair in pairs)
    style = tmp_path / "style.jsonl"
    assert main(["pairs", "--scheme", "style", "--model", str(random_model_dir), "--levels", "3", "--count", "4",
                 "--role", "baseline", "--out", str(style)]) == 0
    assert "wrote 4 style pairs" in capsys.readouterr().out
    assert all(pair.clean_text.endswith("<answer>" + str(pair.meta["answer"])[0]) for pair in load_pairs(style))
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"question": "Tom has 3 apples and buys 4. How many?", "answer": "#### 7"}\n')
    real = tmp_path / "real.jsonl"
    assert main(["pairs", "--scheme", "style", "--model", str(random_model_dir), "--questions", str(questions),
                 "--out", str(real)]) == 0
    (pair,) = load_pairs(real)
    assert pair.meta["answer"] == "#### 7" and "<think>" in pair.clean_text and pair.corrupted_text.endswith("To determine the answer, w")


def test_style_pairs_from_the_openings_two_models_write(random_model_dir, base_model_dir, tmp_path, capsys):
    """The random model plays the reasoning model, the base model the baseline: greedy openings, aligned."""
    out = tmp_path / "sampled.jsonl"
    assert main(["pairs", "--scheme", "style", "--model", str(base_model_dir), "--levels", "1", "2", "--count", "4",
                 "--reasoning-model", str(random_model_dir), "--baseline-model", str(base_model_dir),
                 "--sample-tokens", "6", "--opening-tokens", "2", "--role", "baseline", "--out", str(out)]) == 0
    pairs = load_pairs(out)
    assert "style pairs" in capsys.readouterr().out and len(pairs) == 4
    tokenizer = transformers.AutoTokenizer.from_pretrained(base_model_dir)
    questions = [pair.meta["question"] for pair in pairs]
    reasoning = sample_openings(transformers.AutoModelForCausalLM.from_pretrained(random_model_dir), tokenizer, questions, tokens=6)
    baseline = sample_openings(transformers.AutoModelForCausalLM.from_pretrained(base_model_dir), tokenizer, questions, tokens=6)
    for pair, think, direct in zip(pairs, reasoning, baseline):
        assert pair.meta["reasoning_model"] == str(random_model_dir) and pair.meta["baseline_model"] == str(base_model_dir)
        assert len(pair.clean_ids) == len(pair.corrupted_ids) and len(pair.targets) == 2
        prompt = pair.clean_ids[: pair.targets[0]]
        assert pair.clean_ids == prompt + tokenizer(direct, add_special_tokens=False)["input_ids"][:2]
        assert pair.corrupted_ids == prompt + tokenizer(think, add_special_tokens=False)["input_ids"][:2]


def test_score_edges_writes_scores_circuit_and_heatmap(numbers_file, random_model_dir, tmp_path, capsys):
    out = tmp_path / "edges"
    assert main(["score", "--model", str(random_model_dir), "--pairs", str(numbers_file), "--method", "eap-ig",
                 "--level", "edge", "--ig-steps", "2", "--metric", "kl", "--batch-size", "4", "--top-n", "60",
                 "--out", str(out)]) == 0
    scores = load_file(str(out / "scores.safetensors"))
    assert scores["edges"].shape == (6, 1 + 2 * 5, 2 * 9 + 1) and scores["nodes"].shape == (6, 11)
    assert scores["edges"].abs().sum() > 0
    summary = json.loads((out / "scores.json").read_text())
    assert summary["num_pairs"] == 6 and summary["method"] == "eap-ig" and summary["level"] == "edge"
    importance = torch.tensor(summary["importance"])
    assert importance.shape == (2, 4) and abs(importance.sum().item() - 1) < 1e-5
    circuit = Circuit.load(out / "circuit")
    assert circuit.heads and [list(head) for head in circuit.heads] == summary["circuit_heads"]
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "scored 6 pairs" in capsys.readouterr().out
    membership = torch.tensor(summary["membership"])
    assert summary["replicates"] == 100 and membership.shape == (2, 4) and ((membership >= 0) & (membership <= 1)).all()
    assert (torch.tensor(summary["importance_low"]) <= importance + 1e-9).all()
    assert (importance <= torch.tensor(summary["importance_high"]) + 1e-9).all()
    assert 0 < summary["stability"] <= 1 and summary["null_churn"] >= 0
    assert summary["faithfulness"] is not None and summary["faithfulness"] <= 1 + 1e-6
    low, high = summary["faithfulness_interval"]
    assert low <= summary["faithfulness"] <= high


def test_score_exact_heads_subset(numbers_file, random_model_dir, tmp_path):
    out = tmp_path / "exact"
    assert main(["score", "--model", str(random_model_dir), "--pairs", str(numbers_file), "--method", "exact",
                 "--level", "node", "--metric", "logit_diff", "--heads", "0.1,1.3", "--out", str(out)]) == 0
    heads = load_file(str(out / "scores.safetensors"))["heads"]
    assert heads.shape == (6, 2, 4)
    assert not heads[:, 0, 1].isnan().any() and not heads[:, 1, 3].isnan().any() and heads[:, 0, 0].isnan().all()
    importance = json.loads((out / "scores.json").read_text())["importance"]
    assert importance[0][0] is None and importance[0][1] > 0


@pytest.fixture(scope="module")
def mamba_dir(tmp_path_factory):
    """A model without attention heads, which the architecture table refuses."""
    directory = tmp_path_factory.mktemp("mamba")
    config = transformers.MambaConfig(num_hidden_layers=1, hidden_size=16, vocab_size=300, state_size=4)
    transformers.MambaForCausalLM(config).save_pretrained(directory)
    return directory


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("mismatched", "clean has 3 tokens, corrupted has 2"),
        ("empty", "holds no pairs"),
        ("head", "layer 5 out of range"),
        ("modules", "model_type 'mamba' is not supported: no attention heads"),
        ("missing_pairs", "does not exist"),
        ("missing_model", "model directory"),
        ("heads_syntax", "LAYER.HEAD"),
        ("numbers_questions", "--questions and --dataset work with --scheme style"),
        ("one_model", "--reasoning-model and --baseline-model are given together"),
        ("eap_kl", "--method, --metric: eap with kl scores exactly zero"),
    ],
)
@pytest.mark.hostile
def test_errors_are_one_line_and_exit_2(case, message, numbers_file, random_model_dir, mamba_dir, tmp_path, capsys):
    model, pairs = str(random_model_dir), str(numbers_file)
    extra = []
    if case == "mismatched":
        pairs = str(_write(tmp_path / "p.jsonl", [{"clean_ids": [1, 2, 3], "corrupted_ids": [1, 2], "targets": [1]}]))
    elif case == "empty":
        pairs = str(_write(tmp_path / "p.jsonl", []))
    elif case == "head":
        extra = ["--method", "exact", "--heads", "5.0"]
    elif case == "modules":
        model = str(mamba_dir)
    elif case == "missing_pairs":
        pairs = str(tmp_path / "nothing.jsonl")
    elif case == "missing_model":
        model = str(tmp_path / "no-model")
    elif case == "heads_syntax":
        extra = ["--method", "exact", "--heads", "3"]
    elif case == "eap_kl":
        extra = ["--method", "eap", "--metric", "kl"]
    if case == "numbers_questions":
        questions = _write(tmp_path / "q.jsonl", [{"question": "1+2"}])
        argv = ["pairs", "--scheme", "numbers", "--model", model, "--questions", str(questions), "--out", str(tmp_path / "x.jsonl")]
    elif case == "one_model":
        argv = ["pairs", "--scheme", "style", "--model", model, "--reasoning-model", model, "--out", str(tmp_path / "x.jsonl")]
    else:
        argv = ["score", "--model", model, "--pairs", pairs, "--out", str(tmp_path / "out"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err  # progress bars may come first
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("sparks: error: ") and message in last and err.count("sparks: error") == 1


def test_console_script_is_installed(random_model_dir, tmp_path):
    script = Path(sys.executable).parent / "sparks"
    assert script.exists()
    result = subprocess.run([str(script), "score", "--model", str(random_model_dir), "--pairs", str(tmp_path / "none.jsonl"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("sparks: error: pair file")


@pytest.fixture
def no_model_weights(monkeypatch):
    """Loading any model's weights fails the test: pair-file checks come before."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model's weights were loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


@pytest.mark.parametrize(
    "change, field, why",
    [
        ({"corrupted_ids": "clean_ids"}, "corrupted_ids", "clean and corrupted are identical; the pair has nothing to patch"),
        ({"clean_ids": "shifted"}, "clean_ids", "not this tokenizer's encoding of clean_text (made with another tokenizer?)"),
        ({"clean_ids": [5, 6.0]}, "clean_ids", "item 1 is 6.0, not an integer"),
        ({"corrupted_ids": ["5", 7]}, "corrupted_ids", 'item 0 is "5", not an integer'),
        ({"meta": "level 1"}, "meta", "must be an object, got a string"),
        ({"targets": {"last": 1}}, "targets", "must be a list of integers, got an object"),
        ({"clean_text": ["a"]}, "clean_text", "must be a string, got an array"),
        ({"clean_ids": "beyond"}, "clean_ids", "id 50000 is outside the model's vocabulary of 264 tokens"),
        ({"corrupted_answer_ids": [264]}, "corrupted_answer_ids", "id 264 is outside the model's vocabulary of 264 tokens"),
    ],
)
@pytest.mark.hostile
def test_score_refuses_a_bad_pair_file_before_loading_the_model(
    change, field, why, numbers_file, random_model_dir, no_model_weights, tmp_path, capsys
):
    good, record = (json.loads(line) for line in numbers_file.read_text().splitlines()[:2])
    for name, value in change.items():
        if value == "clean_ids":
            value = record["clean_ids"]
        elif value == "shifted":
            value = [index + 1 for index in record["clean_ids"]]
        elif value == "beyond":
            value = record["clean_ids"][:-1] + [50000]
        record[name] = value
    pairs = _write(tmp_path / "p.jsonl", [good, record])
    out = tmp_path / "out"
    assert main(["score", "--model", str(random_model_dir), "--pairs", str(pairs), "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"sparks: error: {pairs}:2: {field}: {why}"]
    assert not out.exists()


@pytest.fixture(scope="module")
def nan_model_dir(random_model_dir, tmp_path_factory):
    """The random tiny model with one layer's MLP output weights NaN, and its tokenizer."""
    directory = tmp_path_factory.mktemp("nan-model")
    model = transformers.AutoModelForCausalLM.from_pretrained(random_model_dir)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    model.save_pretrained(directory)
    transformers.AutoTokenizer.from_pretrained(random_model_dir).save_pretrained(directory)
    return directory


# summed values checked: heads, ranked and 4 replicates' ranked per head; 8 heads, or the 2 scored ones
@pytest.mark.parametrize("extra, values", [([], 48), (["--method", "exact", "--metric", "logit_diff", "--heads", "0.1,1.3"], 12)])
@pytest.mark.hostile
def test_score_refuses_a_model_with_non_finite_scores(extra, values, numbers_file, nan_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["score", "--model", str(nan_model_dir), "--pairs", str(numbers_file), "--ig-steps", "2",
                 "--replicates", "4", "--out", str(out), *extra]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "sparks: error" in line]
    assert errors == [f"sparks: error: {nan_model_dir}: non-finite head scores: {values} of {values} "
                      "summed values are NaN or inf (does the model produce NaN/inf logits?)"]
    assert not out.exists()


def _family_dir(directory: Path, model_type: str, **settings) -> Path:
    """A weights-only tiny random model of ``model_type`` saved in ``directory``."""
    config = transformers.AutoConfig.for_model(
        model_type, vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, head_dim=16, max_position_embeddings=64, tie_word_embeddings=False, **settings)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    return directory


@pytest.mark.hostile
def test_score_refuses_a_node_only_family_at_edge_level_before_loading_it(tmp_path, capsys, monkeypatch):
    from sparks.probes.pairs import Pair, save_pairs

    model_dir = _family_dir(tmp_path / "deepseek", "deepseek_v3", n_routed_experts=4, n_group=1, topk_group=1,
                            num_experts_per_tok=2, first_k_dense_replace=1, moe_intermediate_size=32, q_lora_rank=32,
                            kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16)
    pairs = tmp_path / "pairs.jsonl"
    save_pairs([Pair("", "", [1, 2, 3, 4], [1, 5, 3, 4], [3], [6], [7])] * 2, pairs)
    capsys.readouterr()
    loads = []
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: loads.append(a))
    out = tmp_path / "out"
    assert main(["score", "--model", str(model_dir), "--pairs", str(pairs), "--level", "edge", "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "sparks: error: deepseek_v3 is scored at node level only, not edge: multi-head latent attention: keys and "
        "values come from a shared low-rank latent, so a head's k/v input is no slice of one projection"]
    assert loads == [] and not out.exists()


def _argv(command: str, model: Path, tmp_path: Path, *extra: str) -> list[str]:
    """A whole ``sparks COMMAND`` line on ``model`` with ``extra`` flags: nothing missing but what they get wrong."""
    heads = tmp_path / "heads.txt"
    heads.write_text("0.1")
    pairs = tmp_path / "pairs.jsonl"
    required = {"pairs": ["--scheme", "numbers", "--model", str(model)],
                "score": ["--model", str(model), "--pairs", str(pairs)],
                "think": ["--model", str(model)],
                "ablate": ["--model", str(model), "--heads", str(heads), "--mode", "zero"]}[command]
    return [command, *required, "--out", str(tmp_path / "out"), *extra]


@pytest.fixture
def no_work(monkeypatch):
    """Loading a model's weights or drawing arithmetic problems fails the test: the input is checked before either."""

    def refuse(*args, **kwargs):
        raise AssertionError("work began before the input was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(arith, "_draw", refuse)


@pytest.mark.parametrize(
    "command, extra, message",
    [
        ("ablate", ["--mode", "scale", "--factor", "nan"], "--factor: must be a finite number, got nan"),
        ("ablate", ["--mode", "scale", "--factor", "inf"], "--factor: must be a finite number, got inf"),
        ("ablate", ["--mode", "scale", "--factor=-inf"], "--factor: must be a finite number, got -inf"),
        ("ablate", ["--temperature", "nan"], "--temperature: must be a finite number, got nan"),
        ("score", ["--batch-size", "0"], "--batch-size: must be a whole number > 0, got 0"),
        ("think", ["--batch-size", "0"], "--batch-size: must be a whole number > 0, got 0"),
        ("ablate", ["--batch-size", "-2"], "--batch-size: must be a whole number > 0, got -2"),
        ("ablate", ["--per-level", "0"], "--per-level: must be a whole number > 0, got 0"),
        ("ablate", ["--controls", "0"], "--controls: must be a whole number > 0, got 0"),
        ("ablate", ["--max-new-tokens", "0"], "--max-new-tokens: must be a whole number > 0, got 0"),
        ("score", ["--chunk-size", "0"], "--chunk-size: must be a whole number > 0 or unset, got 0"),
        ("score", ["--mass", "2"], "--mass: must lie in (0, 1], got 2.0"),
        ("think", ["--level", "edge", "--tau", "-0.5"], "--tau: must lie in [0, 1], got -0.5"),
        ("think", ["--confidence", "0.5"], "--confidence: must lie in (0.5, 1], got 0.5"),
        ("score", ["--ig-steps", "0"], "--ig-steps: must be a whole number > 0, got 0"),
        ("score", ["--top-n", "-1"], "--top-n: must be a whole number > 0, got -1"),
        ("score", ["--mass", "nan"], "--mass: must be a finite number, got nan"),
        ("think", ["--tokens", "0"], "--tokens: must be a whole number > 0, got 0"),
        ("think", ["--count", "0"], "--count: must be a whole number > 0, got 0"),
        ("think", ["--replicates", "1.5"], "--replicates: must be a whole number > 0, got '1.5'"),
        ("pairs", ["--count", "0"], "--count: must be a whole number > 0, got 0"),
        ("ablate", ["--bogus", "1"], "unrecognized arguments: --bogus 1"),
        ("think", ["--levels", "1", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
@pytest.mark.hostile
def test_flags_are_refused_with_the_commands_usage_in_one_line(command, extra, message, random_model_dir, tmp_path,
                                                               no_work, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(_argv(command, random_model_dir, tmp_path, *extra))
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith(f"usage: sparks {command} ")
    assert [line for line in err.splitlines() if "error" in line] == [f"sparks: error: {message}"]
    assert err.endswith(f"sparks: error: {message}\n") and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command, extra, message",
    [
        ("think", ["--count", "1000000000"],
         "--count: 1000000000 problems asked, levels [1, 2, 3, 4, 5, 6] of the probe split hold 16056"),
        ("pairs", ["--levels", "2", "1", "--count", "100"], "--count: 100 problems asked, levels [1, 2] of the probe split hold 62"),
        ("ablate", ["--per-level", "1000000000"], "--per-level: 1000000000 problems asked of each level; no level of "
                                                  "[1, 2, 3, 4, 5, 6] in the test split holds more than 14564"),
        ("ablate", ["--levels", "1", "--split", "probe", "--per-level", "7"],
         "--per-level: 7 problems asked of each level; no level of [1] in the probe split holds more than 6"),
        ("pairs", ["--levels", "1", "9"], "--levels: unknown level 9; the arithmetic world's levels are 1, 2, 3, 4, 5, 6"),
    ],
)
@pytest.mark.hostile
def test_more_problems_than_the_levels_hold_are_refused_without_drawing(command, extra, message, random_model_dir,
                                                                        tmp_path, no_work, capsys):
    assert main(_argv(command, random_model_dir, tmp_path, *extra)) == 2
    assert capsys.readouterr().err.splitlines() == [f"sparks: error: {message}"]
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def weights_only_dir(random_model_dir, tmp_path_factory):
    """The random tiny model's config and weights, without its tokenizer."""
    directory = tmp_path_factory.mktemp("weights-only")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(random_model_dir / name, directory / name)
    return directory


@pytest.mark.parametrize("command", ["pairs", "think", "ablate"])
@pytest.mark.hostile
def test_a_model_without_a_tokenizer_is_refused_before_it_loads(command, weights_only_dir, tmp_path, no_work, capsys):
    assert main(_argv(command, weights_only_dir, tmp_path)) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"sparks: error: model directory {weights_only_dir} holds no tokenizer (tokenizer.json or tokenizer_config.json); "
        "save the model's tokenizer with it"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command, flag, kind, what",
    [("score", "--pairs", "binary", "pair"), ("think", "--pairs", "directory", "pair"), ("think", "--questions", "binary", "questions"),
     ("ablate", "--heads", "binary", "heads"), ("ablate", "--problems", "directory", "problem")],
)
@pytest.mark.hostile
def test_input_files_are_named_in_every_refusal(command, flag, kind, what, random_model_dir, tmp_path, no_work, capsys):
    path = tmp_path / "input.jsonl"
    if kind == "binary":
        path.write_bytes(b"text first\n\xa0\xff")
    else:
        path.mkdir()
    assert main(_argv(command, random_model_dir, tmp_path, flag, str(path))) == 2
    why = f"{path}:2: not UTF-8 text; a {what} file is text" if kind == "binary" else f"{what} file {path} is a directory, not a file"
    assert capsys.readouterr().err.splitlines() == [f"sparks: error: {why}"]
    assert not (tmp_path / "out").exists()
