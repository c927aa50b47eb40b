"""Token classification: CoNLL reading, subword alignment, the offline metric (seqeval semantics), training, bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from skewtune.data.tokens import (
    IGNORE_INDEX,
    align_labels,
    decode_predictions,
    load_token_splits,
    read_conll,
    tokenize_token_split,
)
from skewtune.errors import ConfigError, DataError

# ------------------------------------------------------------------------------------------------ toy NER data
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank"]
PLACES = ["paris", "berlin", "madrid", "rome", "vienna", "lisbon"]
FILLER = ["the", "movie", "was", "seen", "by", "in", "with", "today", "and", "a"]


def toy_sentences(n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(3, 7)):
            kind = rng.random()
            if kind < 0.2:
                words += [rng.choice(PEOPLE), rng.choice(PEOPLE)]
                tags += ["B-PER", "I-PER"]
            elif kind < 0.35:
                words.append(rng.choice(PLACES))
                tags.append("B-LOC")
            else:
                words.append(rng.choice(FILLER))
                tags.append("O")
        out.append((words, tags))
    return out


def write_conll(path: Path, sentences, docstart: bool = True) -> Path:
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for words, tags in sentences:
        lines += [f"{w} NN O {t}" for w, t in zip(words, tags)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """2 shared cores: a single torch thread avoids oversubscription (much faster for tiny models)."""
    import os

    import torch

    previous, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(previous)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(scope="module")
def ner_conll(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_conll(tmp_path_factory.mktemp("ner") / "toy.conll", toy_sentences(160, seed=3))


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))


# ---------------------------------------------------------------------------------------------------- reading
def test_read_conll_2003_layout(tmp_path: Path) -> None:
    sentences = [(["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]), (["Peter"], ["B-PER"])]
    path = write_conll(tmp_path / "a.conll", sentences)
    assert read_conll(path) == sentences
    assert read_conll(path, tag_column=2)[0][1] == ["O", "O", "O", "O"]


def test_read_conllu(tmp_path: Path) -> None:
    text = (
        "# sent_id = 1\n# text = Vámonos al mar.\n"
        "1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "1\tVamos\tir\tVERB\t_\t_\t0\troot\t_\t_\n"
        "2\tnos\tnosotros\tPRON\t_\t_\t1\tobj\t_\t_\n"
        "2.1\tx\tx\tX\t_\t_\t_\t_\t_\t_\n"
        "3\tal\tal\tADP\t_\t_\t4\tcase\t_\t_\n"
        "4\tmar\tmar\tNOUN\t_\t_\t1\tobl\t_\t_\n\n"
    )
    (tmp_path / "a.conllu").write_text(text, encoding="utf-8")
    assert read_conll(tmp_path / "a.conllu") == [(["Vamos", "nos", "al", "mar"], ["VERB", "PRON", "ADP", "NOUN"])]


def test_read_conll_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conll"
    bad.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        read_conll(bad)
    (tmp_path / "empty.conll").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no tagged sentence"):
        read_conll(tmp_path / "empty.conll")
    with pytest.raises(DataError, match="does not exist"):
        read_conll(tmp_path / "missing.conll")


def test_tagset_mapping_names_unmapped_tags(tmp_path: Path) -> None:
    path = tmp_path / "ptb.conll"
    path.write_text("The DT\ndog NN\nbarks VBZ\n\nA DT\ncat NN\nQQQ ZZ\nfoo YY\n\nthe DT\nend NN\n\nx DT\ny NN\n",
                    encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_token_splits(str(path), tagset="en-ptb")
    assert "'YY' (1x)" in info.value.message and "'ZZ' (1x)" in info.value.message
    with pytest.raises(ConfigError, match="unknown tagset 'klingon'"):
        load_token_splits(str(path), tagset="klingon")


def test_splits_are_disjoint_and_seeded(ner_conll: Path) -> None:
    a = load_token_splits(str(ner_conll), seed=1)
    b = load_token_splits(str(ner_conll), seed=1)
    assert a.train == b.train and a.labels == ["B-LOC", "B-PER", "I-PER", "O"]
    keys = [{tuple(w) for w, _ in getattr(a, s)} for s in ("train", "validation", "test")]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


# -------------------------------------------------------------------------------------------------- alignment
def test_align_labels_first_subword() -> None:
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    assert align_labels(word_ids, [5, 6, 7]) == [IGNORE_INDEX, 5, IGNORE_INDEX, 6, 7, IGNORE_INDEX, IGNORE_INDEX,
                                                 IGNORE_INDEX]
    assert align_labels(word_ids, [0, 2, 1], label_all_subwords=True, continuation={0: 1}) == [
        IGNORE_INDEX, 0, 1, 2, 1, 1, 1, IGNORE_INDEX]


def test_tokenize_prefix_truncation_and_decoding(tokenizer) -> None:
    import torch

    label2id = {"O": 0, "B-PER": 1}
    sentences = [(["hello", "unbelievably", "alice"], ["O", "O", "B-PER"]), (["a"] * 30, ["O"] * 30)]
    split = tokenize_token_split(tokenizer, sentences, label2id, max_length=12, prefix="query: ")
    ids, labels, first = split.input_ids[0], split.labels[0], split.word_positions[0]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert pieces[:4] == ["[CLS]", "query", ":", "hello"]  # the prefix words carry no label
    assert [labels[p] for p in first] == [0, 0, 1]
    assert sum(1 for x in labels if x != IGNORE_INDEX) == 3  # one label per word, not per subword
    assert pieces[first[1]] == "unbelievably" or pieces[first[1] + 1].startswith("##")
    # the long sentence is cut to 12 tokens, [SEP] kept, words past the cut unpredicted
    assert len(split.input_ids[1]) == 12 and split.input_ids[1][-1] == tokenizer.sep_token_id
    assert split.truncated == 1 and split.missing_words == 30 - 8
    logits = torch.full((2, 12, 2), float("nan"))
    logits[0, : len(ids)] = torch.tensor([[0.0, 1.0]] * len(ids))
    logits[1] = torch.tensor([[1.0, 0.0]] * 12)
    decoded = decode_predictions(logits, split, {0: "O", 1: "B-PER"}, missing="<none>")
    assert decoded[0] == ["B-PER"] * 3 and decoded[1][:8] == ["O"] * 8 and decoded[1][8:] == ["<none>"] * 22


# ------------------------------------------------------------------------------------------------------ metric
# expected values computed with seqeval 1.2.2 (default mode) on the same inputs
SEQEVAL_CASES = [
    ([["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]],
     [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]], (0.5, 0.5, 0.5)),
    # an I- after O opens a chunk (IOB1 style); chunks never cross sentences
    ([["I-PER", "I-PER", "O"], ["I-LOC"]], [["B-PER", "I-PER", "O"], ["B-LOC"]], (1.0, 1.0, 1.0)),
    ([["B-PER", "I-LOC"]], [["B-PER", "I-PER"]], (0.0, 0.0, 0.0)),
    # IOBES
    ([["S-LOC", "B-PER", "E-PER", "O"]], [["S-LOC", "B-PER", "I-PER", "O"]], (1.0, 1.0, 1.0)),
    ([["O", "O"]], [["B-PER", "O"]], (0.0, 0.0, 0.0)),
]


@pytest.mark.parametrize("gold,pred,expected", SEQEVAL_CASES)
def test_entity_scores_follow_seqeval(gold, pred, expected) -> None:
    from skewtune.evaluation import load_metric

    result = load_metric("token_classification").compute(predictions=pred, references=gold)
    assert (result["entity_precision"], result["entity_recall"], result["entity_f1"]) == pytest.approx(expected)
    try:  # cross-check with seqeval itself when it happens to be installed
        from seqeval.metrics import f1_score
    except ImportError:
        return
    assert result["entity_f1"] == pytest.approx(f1_score(gold, pred, zero_division=0))


def test_token_metrics_and_non_bio_tags() -> None:
    from skewtune.evaluation import load_metric

    metric = load_metric("token_classification")
    result = metric.compute(predictions=[["NOUN", "VERB"], ["DET", "<none>"]],
                            references=[["NOUN", "NOUN"], ["DET", "ADJ"]], labels=["ADJ", "DET", "NOUN", "VERB"])
    assert result["accuracy"] == 0.5 and result["num_tokens"] == 4
    # macro over the tags present in references or predictions: ADJ 0, DET 1, NOUN 2/3, VERB 0
    assert result["macro_f1"] == pytest.approx((0 + 1 + 2 / 3 + 0) / 4)
    assert result["entity_f1"] is None and result["labels"] == ["ADJ", "DET", "NOUN", "VERB"]


# ---------------------------------------------------------------------------------------------------- training
def test_train_tokens_cli_end_to_end(tiny_bert: Path, ner_conll: Path, tmp_path: Path, capsys) -> None:
    from skewtune.adapters.io import verify_folder
    from skewtune.cli.main import main

    out = tmp_path / "run"
    code = main(["train-tokens", "--dataset", str(ner_conll), "--backbone", str(tiny_bert), "--output_dir", str(out),
                 "--quant", "none", "--num_train_epochs", "15", "--learning_rate", "2e-2",
                 "--per_device_train_batch_size", "16", "--report_plots", "false", "--text_prefix", "query: ",
                 "--target_modules", "all", "--eval_every_epoch", "false"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task_type"] == "token_cls" and metrics["eval_accuracy"] > 0.8
    assert {"eval_entity_precision", "eval_entity_recall", "eval_entity_f1"} <= set(metrics)
    assert metrics["eval_entity_f1"] > 0.4
    manifest = verify_folder(out / "adapter")
    assert manifest["task_type"] == "token_cls" and set(manifest["id2label"].values()) == {"B-LOC", "B-PER", "I-PER", "O"}
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "TOKEN_CLS" and "classifier" in config["modules_to_save"]


def test_token_cls_8bit_lora_forward(tiny_bert: Path) -> None:
    import torch

    from skewtune.adapters import AdapterSettings, build_adapter
    from skewtune.backbones import load_backbone, resolve_backbone
    from skewtune.tasks import TokenCrossEntropy

    model = load_backbone(resolve_backbone(str(tiny_bert)), task="token_cls", num_labels=3, quant="8bit")
    assert any(type(m).__name__ == "Linear8bitLt" for m in model.modules())
    model = build_adapter(model, "lora", AdapterSettings(modules_to_save=["classifier"]), task="token_cls")
    ids = torch.tensor([[101, 2000, 2001, 102, 0]])
    logits = model(input_ids=ids, attention_mask=(ids > 0).long()).logits
    labels = torch.tensor([[-100, 1, 2, -100, -100]])
    loss = TokenCrossEntropy()(logits, labels)
    loss.backward()
    assert logits.shape == (1, 5, 3) and torch.isfinite(loss)
    assert TokenCrossEntropy()(logits, torch.full_like(labels, -100)).item() == 0.0


# ---------------------------------------------------------------------------------------------------- bad input
def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def test_unmapped_tagset_is_one_line_and_writes_nothing(tiny_bert: Path, tmp_path: Path, capsys) -> None:
    from skewtune.cli.main import main

    data = tmp_path / "ptb.conll"
    data.write_text("\n\n".join("The DT\ndog NN\nbarks VBZ\nhere WEIRD1" if i % 2 else "A DT\ncat NN\nsat XX9"
                                for i in range(12)), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["train-tokens", "--dataset", str(data), "--tagset", "en-ptb", "--backbone", str(tiny_bert),
                 "--output_dir", str(out), "--quant", "none"]) == 2
    line = _one_error_line(capsys)
    assert "'WEIRD1' (6x)" in line and "'XX9' (6x)" in line and "en-ptb" in line
    assert not out.exists()


@pytest.mark.parametrize("flags,expect", [
    (["--sampler", "random_over"], "--sampler is not supported for token classification"),
    (["--tagset", "klingon"], "unknown tagset 'klingon'"),
    (["--dataset", "no_such_corpus"], "neither a known name nor an existing file"),
    (["--dataset", "de_tiger", "--tagset", "de-stts"], "already in universal POS tags"),
])
def test_token_bad_flags(tiny_bert: Path, ner_conll: Path, tmp_path: Path, capsys, flags, expect) -> None:
    from skewtune.cli.main import main

    out = tmp_path / "out"
    args = ["train-tokens", "--dataset", str(ner_conll), "--backbone", str(tiny_bert), "--output_dir", str(out),
            "--quant", "none", *flags]
    assert main(args) == 2
    assert expect in _one_error_line(capsys)
    assert not out.exists()
