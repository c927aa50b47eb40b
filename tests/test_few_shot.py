"""Few-shot recipe: k-shot sampling, SetFit-style pairs, every method end to end on the tiny backbone, bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from skewtune.errors import ConfigError, DataError
from skewtune.fewshot import (
    METHODS,
    FewShotConfig,
    all_pairs,
    generate_pairs,
    natural_allocation,
    parse_seeds,
    sample_k_shot,
)
from tests.conftest import REPO, make_texts, write_csv

LABELS = ["neg"] * 60 + ["pos"] * 30 + ["neu"] * 10


def _load_recipe():
    spec = importlib.util.spec_from_file_location("few_shot_recipe", REPO / "recipes" / "few_shot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ sampling
def test_k_shot_sampling_is_deterministic_per_seed_and_nested() -> None:
    a = sample_k_shot(LABELS, 5, seed=3)
    assert a.indices == sample_k_shot(LABELS, 5, seed=3).indices
    assert a.indices != sample_k_shot(LABELS, 5, seed=4).indices
    assert a.counts == {"neg": 5, "neu": 5, "pos": 5}
    assert all(LABELS[i] in ("neg", "pos", "neu") for i in a.indices) and len(set(a.indices)) == 15
    # the k=5 set of a seed is inside its k=8 set; one class's draw does not depend on the others
    assert set(a.indices) <= set(sample_k_shot(LABELS, 8, seed=3).indices)
    # changing another class's rows leaves this class's draw alone
    relabelled = LABELS[:60] + ["neu"] * 30 + ["pos"] * 10
    b = sample_k_shot(relabelled, 5, seed=3, classes=["neg", "neu", "pos"])
    assert [i for i in b.indices if i < 60] == [i for i in a.indices if i < 60]


def test_samples_identical_across_methods(tmp_path: Path) -> None:
    from skewtune.data import load_dataset_splits
    from skewtune.fewshot.runner import draw_samples

    texts, labels = make_texts(120, seed=2)
    data = write_csv(tmp_path / "d.csv", texts, labels)
    splits = load_dataset_splits(str(data))
    drawn = [draw_samples(splits, FewShotConfig(dataset=str(data), method=m, shots=4, seeds="3"), [0, 1, 2])
             for m in METHODS.names()]
    for other in drawn[1:]:
        assert {s: d.indices for s, d in other.items()} == {s: d.indices for s, d in drawn[0].items()}
    assert drawn[0][0].indices != drawn[0][1].indices


def test_natural_distribution_counts() -> None:
    sample = sample_k_shot(LABELS, 10, seed=0, distribution="natural", classes=["neg", "pos", "neu"])
    assert sample.counts == {"neg": 18, "pos": 9, "neu": 3} and len(sample.indices) == 30
    # very skewed: every class keeps at least one example, total stays k·C
    assert natural_allocation([990, 9, 1], 6) == [4, 1, 1]
    assert sum(natural_allocation([5, 7, 11, 13], 20)) == 20
    sample = sample_k_shot(["a"] * 98 + ["b"] * 2, 2, seed=1, distribution="natural")
    assert sample.counts == {"a": 3, "b": 1}


def test_k_larger_than_a_class_says_how_many_exist() -> None:
    with pytest.raises(DataError, match="'neu' has 10") as err:
        sample_k_shot(LABELS, 16, seed=0)
    assert "neu=10" in err.value.hint and "--shots 10" in err.value.hint


def test_parse_seeds() -> None:
    assert parse_seeds("5") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,7,11") == [3, 7, 11] and parse_seeds("7,") == [7] and parse_seeds([1, 2]) == [1, 2]
    assert parse_seeds("[7]") == [7] and parse_seeds("[0, 1, 2]") == [0, 1, 2]
    for bad in ("0", "", "-1", "a,b", "1,1"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


# --------------------------------------------------------------------------------------------------- pairs
def test_setfit_style_pair_generation() -> None:
    labels = [0] * 4 + [1] * 4
    pairs = generate_pairs(labels, seed=0)  # oversampling: 12 positive pairs raised to the 16 negatives
    assert len(pairs) == 32
    assert sum(s for _, _, s in pairs) == 16
    assert all((labels[i] == labels[j]) == (s == 1.0) and i != j for i, j, s in pairs)
    assert pairs == generate_pairs(labels, seed=0) and pairs != generate_pairs(labels, seed=1)
    unique = generate_pairs(labels, seed=0, strategy="unique")
    assert len(unique) == 28 and len({(i, j) for i, j, _ in unique}) == 28
    assert len(generate_pairs(labels, seed=0, strategy="undersampling")) == 24
    assert len(generate_pairs(labels, seed=0, num_iterations=2)) == 2 * 2 * 8
    with pytest.raises(ConfigError, match="positive pair"):
        generate_pairs([0, 1, 2], seed=0)
    from skewtune.fewshot.pairs import auto_allpairs_steps, setfit_pair_count

    assert setfit_pair_count([0] * 8 + [1] * 8) == 144  # what SetFit logs as "Num unique pairs" for k=8, 2 classes
    assert setfit_pair_count([0] * 8 + [1] * 8 + [2] * 8) == 384
    assert auto_allpairs_steps([0] * 8 + [1] * 8) == 5 and auto_allpairs_steps([0] * 8 + [1] * 8 + [2] * 8) == 8
    left, right, same = all_pairs(torch.tensor([0, 0, 1]))
    assert left.tolist() == [0, 0, 1] and right.tolist() == [1, 2, 2] and same.tolist() == [1.0, 0.0, 0.0]


# ------------------------------------------------------------------------------------------------ methods
@pytest.fixture(scope="module")
def tiny_context(tiny_bert: Path):
    from accelerate import Accelerator

    from skewtune.fewshot.runner import build_context

    def make(method: str, **kw):
        cfg = FewShotConfig(backbone=str(tiny_bert), quant="none", method=method, shots=4, learning_rate="1e-2",
                            num_train_epochs=2, allpairs_steps=2, per_device_train_batch_size=8,
                            num_virtual_tokens=4, **kw)
        cfg.validate()
        return build_context(cfg, ["negative", "positive"], accelerator=Accelerator(cpu=True))

    return make


@pytest.mark.parametrize("method", sorted(METHODS.names()))
def test_each_method_trains_end_to_end(tiny_context, method: str) -> None:
    from skewtune.data import tokenize_split
    from skewtune.fewshot.runner import evaluate

    ctx = tiny_context(method)
    texts, names = make_texts(8, seed=5)
    labels = [ctx.labels.index(n) for n in names]
    trained = METHODS.get(method)().train(ctx, texts, labels, seed=0)
    assert trained.trainable_params > 0 and trained.train_seconds > 0
    test_texts, test_names = make_texts(20, seed=9)
    report = evaluate(ctx, trained.model, tokenize_split(ctx.tokenizer, test_texts, [ctx.labels.index(n) for n in test_names]))
    assert 0.0 <= report["macro_f1"] <= 1.0
    if METHODS.get(method).pooled_head:
        assert trained.pooling == {"type": "mean", "normalize": True}
    if method.startswith("prompt_"):
        assert trained.info["prompt_rows"] == 14


def test_natural_distribution_with_imbalance_loss_and_linear_head(tiny_context) -> None:
    ctx = tiny_context("allpairs_lora", shots_distribution="natural", loss="weighted_ce", head="linear",
                       lora_layers="top1")
    texts, names = make_texts(10, seed=3)
    labels = [0] * 7 + [1] * 3
    trained = METHODS.get("allpairs_lora")().train(ctx, texts, labels, seed=1)
    lora = [n for n, p in trained.model.named_parameters() if "lora_" in n]
    assert lora and all(".layer.1." in n for n in lora)  # --lora_layers top1 of 2


def test_frozen_prefix_cache_matches_the_full_forward(tiny_context) -> None:
    from skewtune.data import tokenize_split
    from skewtune.fewshot.methods import build_model
    from skewtune.fewshot.pooling import FrozenPrefixEncoder, SentenceEncoder

    ctx = tiny_context("allpairs_lora", lora_layers="top1")
    model = build_model(ctx, "lora", pooled_head=True).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a trained-looking adapter, so the top layer differs from the base
    texts, _ = make_texts(6, seed=4)
    batch = ctx.collator([{"input_ids": ids} for ids in tokenize_split(ctx.tokenizer, texts + ["short"]).input_ids])
    full = SentenceEncoder(model)(**batch).logits
    cached = FrozenPrefixEncoder(model, start=1, buckets=2)
    first, again = cached(**batch).logits, cached(**batch).logits
    assert len(cached.cache) == 7
    assert torch.allclose(full, first, atol=1e-5) and torch.allclose(first, again)


# ------------------------------------------------------------------------------------------------- recipe
def test_recipe_saves_best_adapter_that_predicts_like_training(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    import skewtune
    from skewtune.adapters.io import verify_folder

    out = tmp_path / "run"
    code = _load_recipe().main([
        "--dataset", str(toy_csv), "--backbone", str(tiny_bert), "--quant", "none", "--output_dir", str(out),
        "--method", "prompt_allpairs_lora", "--shots", "4", "--seeds", "2", "--allpairs_steps", "2",
        "--learning_rate", "1e-2", "--validation_samples", "16", "--test_samples", "24",
    ])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1] and len(metrics["per_seed"]) == 2 and metrics["test_size"] == 24
    assert {"test_macro_f1_mean", "test_macro_f1_std", "test_accuracy_mean", "train_seconds_mean"} <= set(metrics)
    manifest = verify_folder(out / "adapter")
    assert manifest["pooling"] == {"type": "mean", "normalize": True}
    assert manifest["few_shot"]["seed"] == metrics["saved_seed"] and len(manifest["few_shot"]["train_rows"]) == 8
    from skewtune.data import load_dataset_splits

    splits = load_dataset_splits(str(toy_csv))
    rows = [splits.test_texts[i] for i in range(len(splits.test_texts))]
    from skewtune.fewshot.runner import sample_subset

    picked = [rows[i] for i in sample_subset(len(rows), 24, 42)]
    gold = [splits.test_labels[i] for i in sample_subset(len(rows), 24, 42)]
    predicted = [p["label"] for p in skewtune.load_adapter(out / "adapter").predict(picked)]
    accuracy = sum(p == g for p, g in zip(predicted, gold)) / len(gold)
    assert abs(accuracy - metrics["eval_accuracy"]) < 1e-9  # load_adapter re-installs the mean pooling


@pytest.mark.parametrize("flags, expect", [
    (["--shots", "500"], "'negative' has 96"),
    (["--shots", "1", "--method", "contrastive_lora"], "k ≥ 2"),
    (["--seeds", "0"], "at least one seed"),
    (["--method", "nope"], "allpairs_lora"),
    (["--shots_distribution", "skewed"], "natural"),
    (["--adapter", "prefix", "--method", "allpairs_lora"], "injected adapter"),
    (["--learning_rate", "auto"], "auto"),
])
def test_bad_input_one_line_exit_2_nothing_written(capsys, tiny_bert: Path, toy_csv: Path, tmp_path: Path,
                                                    flags: list[str], expect: str) -> None:
    out = tmp_path / "out"
    code = _load_recipe().main(["--dataset", str(toy_csv), "--backbone", str(tiny_bert), "--quant", "none",
                                "--output_dir", str(out), *flags])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "(fix: " in err[0]
    assert expect in err[0], err[0]
    assert not out.exists()



def test_label_prompts_need_word_labels(capsys, tiny_bert: Path, tmp_path: Path) -> None:
    texts, names = make_texts(60, seed=6)
    data = write_csv(tmp_path / "numeric.csv", texts, ["0" if n == "negative" else "1" for n in names])
    out = tmp_path / "out"
    argv = ["--dataset", str(data), "--backbone", str(tiny_bert), "--quant", "none", "--output_dir", str(out),
            "--method", "prompt_allpairs_lora", "--shots", "4"]
    assert _load_recipe().main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "are not words" in err[0] and "--label_words" in err[0] and not out.exists()
    from skewtune.fewshot.prompts import label_prompts

    rows, ids = label_prompts(["0", "1"], "this is {}", "0=bad|awful;1=good")
    assert rows == ["this is bad", "this is awful", "this is good"] and ids == [0, 0, 1]


def test_quick_profile_and_scoring_progress(tiny_bert: Path, toy_csv: Path, tmp_path: Path, capsys) -> None:
    """Issue 24: --quick is a ~1-minute smoke profile (flags given still win); each seed says what it trains and
    scores, and scoring shows a progress bar."""
    recipe = _load_recipe()
    args = recipe.apply_quick(recipe.build_parser().parse_args(["--quick", "--shots", "3"]))
    assert args.shots == 3 and args.seeds == recipe.QUICK["seeds"] and args.test_samples == recipe.QUICK["test_samples"]
    assert "--quick" in recipe.build_parser().format_help()
    out = tmp_path / "quick"
    code = recipe.main(["--quick", "--dataset", str(toy_csv), "--backbone", str(tiny_bert), "--quant", "none",
                        "--output_dir", str(out), "--learning_rate", "1e-2"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["seeds"]) == int(recipe.QUICK["seeds"]) and metrics["shots"] == recipe.QUICK["shots"]
    logged = capsys.readouterr().err
    assert "seed 0 (1 of 2): training on" in logged and "seed 1: scoring" in logged and "test rows" in logged
    assert "predict:" in logged  # tqdm bar over the scoring batches
