"""Entity spans: the chunker shared by the token metric and prediction equals seqeval (default and strict mode) on
random and malformed BIO/BIOES sequences; character-offset spans slice the text exactly; tagging adapters return
spans through `skewtune predict` and the server; the weighted / O-downweighted token loss."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from skewtune.errors import ConfigError, DataError
from skewtune.evaluation.metrics_loader import load_metric
from skewtune.evaluation.spans import entity_scores, get_entities, has_entities, tags_to_spans, word_offsets

TYPES = ("PER", "LOC", "MISC")
HAND = [  # (gold, predicted): malformed sequences included
    (["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "I-LOC"]),  # I- after O opens a chunk
    (["O", "I-PER", "I-PER", "O"], ["B-PER", "I-LOC", "I-LOC", "O"]),  # type switch inside a chunk
    (["B-PER", "E-PER", "S-LOC", "O"], ["E-PER", "E-PER", "S-LOC", "O"]),  # E- without B-
    (["B-MISC", "I-MISC", "E-MISC", "E-MISC"], ["S-MISC", "I-MISC", "E-MISC", "B-MISC"]),
    (["B", "I", "O", "S"], ["B", "B", "O", "E"]),  # bare tags: type "_"
    (["B-PER", "I-LOC", "E-PER", "O", "S-PER", "I-PER"], ["B-PER", "I-PER", "E-PER", "O", "S-PER", "I-PER"]),
    ([], []),
    (["O", "O"], ["O", "B-PER"]),
]


def random_sentences(rng: random.Random, n: int, prefixes: str) -> list[list[str]]:
    out = []
    for _ in range(n):
        length = rng.randint(0, 10)
        out.append([("O" if (p := rng.choice(prefixes + "OO")) == "O" else
                     p if rng.random() < 0.05 else f"{p}-{rng.choice(TYPES)}") for _ in range(length)])
    return out


def seqeval_scores(gold: list[list[str]], pred: list[list[str]], **kwargs) -> dict:
    """seqeval's micro P/R/F1 and per-type scores (default mode, or v1 with mode/scheme)."""
    seqeval = pytest.importorskip("seqeval")
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support
    from seqeval.metrics.v1 import precision_recall_fscore_support as strict_prfs

    scheme = kwargs.get("scheme")
    if scheme is not None:
        kwargs["scheme"] = getattr(__import__("seqeval.scheme", fromlist=[scheme]), scheme)
    micro = {f"entity_{name}": fn(gold, pred, zero_division=0, **kwargs)
             for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score))}
    if kwargs.get("mode") == "strict":
        p, r, f, s = strict_prfs(gold, pred, average=None, zero_division=0, scheme=kwargs["scheme"])
        from seqeval.metrics.v1 import unique_labels
        names = unique_labels(gold, pred, kwargs["scheme"])
    else:
        p, r, f, s = precision_recall_fscore_support(gold, pred, average=None, zero_division=0)
        names = sorted({t for t, _, _ in seqeval.metrics.sequence_labeling.get_entities(gold)}
                       | {t for t, _, _ in seqeval.metrics.sequence_labeling.get_entities(pred)})
    per_type = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                for i, name in enumerate(names)}
    return {**{k: float(v) for k, v in micro.items()}, "entity_per_type": per_type}


def ours(gold: list[list[str]], pred: list[list[str]], **kwargs) -> dict:
    result = entity_scores(gold, pred, **kwargs)
    return {k: result[k] for k in ("entity_precision", "entity_recall", "entity_f1", "entity_per_type")}


@pytest.mark.parametrize("gold,pred", HAND)
def test_hand_written_sequences_score_as_seqeval_does(gold: list[str], pred: list[str]) -> None:
    pytest.importorskip("seqeval")
    from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities

    for sentences in ([gold], [pred], [gold, pred]):
        assert get_entities(sentences) == seqeval_entities([list(s) for s in sentences])
    assert ours([gold], [pred]) == seqeval_scores([gold], [pred])


@pytest.mark.parametrize("prefixes", ["BI", "BIES", "IE"])
def test_random_sequences_score_as_seqeval_does_exactly(prefixes: str) -> None:
    """Exact equality (floats included) with seqeval's default mode on 300 random corpora, BIO and BIOES tags,
    ill-formed ones (I-/E- without B-, type switches) included; scheme=IOBES changes nothing in default mode."""
    pytest.importorskip("seqeval")
    rng = random.Random(len(prefixes))
    for _ in range(300):
        n = rng.randint(1, 6)
        gold, pred = random_sentences(rng, n, prefixes), random_sentences(rng, n, prefixes)
        pred = [p[: len(g)] + ["O"] * (len(g) - len(p)) for g, p in zip(gold, pred)]
        assert ours(gold, pred) == seqeval_scores(gold, pred)
        if "S" in prefixes:
            assert ours(gold, pred) == seqeval_scores(gold, pred, scheme="IOBES")


@pytest.mark.parametrize("scheme,prefixes", [("IOB2", "BI"), ("IOBES", "BIES")])
def test_strict_mode_scores_as_seqeval_strict(scheme: str, prefixes: str) -> None:
    pytest.importorskip("seqeval")
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 6)
        gold, pred = random_sentences(rng, n, prefixes), random_sentences(rng, n, prefixes)
        pred = [p[: len(g)] + ["O"] * (len(g) - len(p)) for g, p in zip(gold, pred)]
        assert ours(gold, pred, mode="strict", scheme=scheme) == seqeval_scores(gold, pred, mode="strict",
                                                                                scheme=scheme)
    # strict differs from the default where chunks are malformed: I-LOC after O is no entity
    gold, pred = [["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "I-LOC"]]
    assert entity_scores(gold, pred)["entity_f1"] == 1.0
    assert entity_scores(gold, pred, mode="strict", scheme="IOB2")["entity_f1"] == pytest.approx(2 / 3)
    with pytest.raises(DataError, match="does not allow"):
        entity_scores([["S-PER"]], [["O"]], mode="strict", scheme="IOB2")
    with pytest.raises(ConfigError, match="needs a scheme"):
        entity_scores(gold, pred, mode="strict")


def test_metric_module_reports_the_shared_entity_scores() -> None:
    """The `token_classification` metric module gives the same entity scores (default and strict)."""
    gold = [g for g, _ in HAND if g and "B" not in g]
    pred = [p for g, p in HAND if g and "B" not in g]
    metric = load_metric("token_classification")
    result = metric.compute(predictions=pred, references=gold)
    assert {k: result[k] for k in ("entity_precision", "entity_recall", "entity_f1", "entity_per_type")} == \
        ours(gold, pred)
    gold2, pred2 = [["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "I-LOC"]]
    strict = metric.compute(predictions=pred2, references=gold2, entity_mode="strict", entity_scheme="IOB2")
    assert strict["entity_f1"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------- character spans
def test_word_offsets_cut_exactly_as_str_split() -> None:
    spaces = "".join(chr(c) for c in range(0x3000 + 1) if chr(c).isspace())
    texts = ["  Ana   Lima\tflew to  São Paulo!  ", "", "   ", "x", "日本 の 東京\u3000タワー", "a\u00a0b\u2003c\nd",
             f"one{spaces}two", "emoji 🙂 ok, (Zoë's) café-bar."]
    for text in texts:
        offsets = word_offsets(text)
        assert [text[s:e] for s, e in offsets] == text.split()


def test_tags_to_spans_slice_the_text() -> None:
    text = "  Ana   Lima\tflew to  São Paulo!  on 日本\u3000航空 ."
    words = text.split()
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O", "B-ORG", "I-ORG", "O"]
    spans = tags_to_spans(words, tags, text, word_offsets(text))
    assert spans == [
        {"type": "PER", "start": 2, "end": 12, "text": "Ana   Lima"},
        {"type": "LOC", "start": 22, "end": 32, "text": "São Paulo!"},
        {"type": "ORG", "start": 37, "end": 42, "text": "日本\u3000航空"},
    ]
    assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)
    # BIOES and a word cut off by truncation (None) ending a span
    text = "New York City , Ana Lima Bo"
    words = text.split()
    got = tags_to_spans(words, ["B-LOC", "I-LOC", "E-LOC", "O", "S-PER", "B-PER", None], text, word_offsets(text))
    assert [(s["type"], s["text"]) for s in got] == [("LOC", "New York City"), ("PER", "Ana"), ("PER", "Lima")]
    got = tags_to_spans(words[:3], ["I-LOC", "I-PER", "I-PER"], text, word_offsets(text)[:3])
    assert [(s["type"], s["text"]) for s in got] == [("LOC", "New"), ("PER", "York City")]
    with pytest.raises(DataError, match="not the word"):
        tags_to_spans(["Ana"], ["B-PER"], "Ana", [(0, 2)])
    with pytest.raises(DataError, match="differ"):
        tags_to_spans(["Ana"], [], "Ana", [(0, 3)])


def test_only_entity_tag_sets_have_spans() -> None:
    assert has_entities(["O", "B-PER", "I-PER"]) and has_entities(["O", "S-LOC", "B-LOC", "E-LOC", "I-LOC"])
    assert not has_entities(["NOUN", "VERB", "X"]) and not has_entities(["O", "B", "I"])


# ------------------------------------------------------------------------------------------ prediction with spans
SPAN_TEXTS = ["Ana   Lima flew to\tLisbon ,  São Paulo!", "  Zoë met Bruno in 東京\u3000today .  ", "nobody here",
              "Ana " * 12]


@pytest.fixture(scope="module")
def one_thread():
    """2 shared cores: a single torch thread is faster for the tiny model."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def check_span_records(records: list[dict], texts: list[str]) -> int:
    """Every record's spans are the chunks of its tags, located at its words' offsets; returns the span count."""
    n = 0
    for record, text in zip(records, texts):
        assert record["words"] == text.split()
        assert record["spans"] == tags_to_spans(record["words"], record["tags"], text, word_offsets(text))
        for span in record["spans"]:
            assert text[span["start"]:span["end"]] == span["text"] and span["text"] == span["text"].strip()
        n += len(record["spans"])
    return n


def test_tagging_adapter_predicts_spans_in_process_and_through_the_server(tiny_bert: Path, tmp_path: Path,
                                                                           one_thread) -> None:
    """A LoRA tagging adapter with BIO tags answers {"words", "tags", "spans"} through the serving pool and the
    app's /v1/predict; a POS tagger answers without "spans"."""
    from starlette.testclient import TestClient

    from skewtune.serve.app import create_app
    from skewtune.serve.pool import AdapterPool
    from tests.test_serve_pool import make_tagger

    ner = make_tagger(tiny_bert, tmp_path / "ner", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], 8)
    pos = make_tagger(tiny_bert, tmp_path / "pos", ["NOUN", "VERB", "X"], 7)
    pool = AdapterPool()
    served_ner, served_pos = pool.add(ner), pool.add(pos)
    encoded, cut = pool.encode(served_ner, SPAN_TEXTS)
    assert cut == [3] and [e.word_offsets for e in encoded] == [word_offsets(t) for t in SPAN_TEXTS]
    records = pool.predict_rows([(served_ner, e) for e in encoded])
    assert check_span_records(records, SPAN_TEXTS) > 0  # random heads tag plenty of words as entities
    assert None in records[3]["tags"]  # cut off at 12 tokens: those words end spans, none covers them
    last_tagged = max(i for i, t in enumerate(records[3]["tags"]) if t is not None)
    assert all(s["end"] <= word_offsets(SPAN_TEXTS[3])[last_tagged][1] for s in records[3]["spans"])
    pos_records = pool.predict_rows([(served_pos, e) for e in pool.encode(served_pos, SPAN_TEXTS)[0]])
    assert all(set(r) == {"words", "tags"} for r in pos_records)
    with TestClient(create_app(pool)) as client:
        answer = client.post("/v1/predict", json={"adapter": "ner", "texts": SPAN_TEXTS})
    assert answer.status_code == 200 and answer.json()["predictions"] == records


def test_trained_tagger_predict_command_writes_spans(tiny_bert: Path, tmp_path: Path, one_thread, capsys) -> None:
    """train-tokens (square-root class weights, O down-weighted) on a toy NER corpus, then `skewtune predict`:
    each record carries spans whose offsets slice the input text, found where the tagger learned entities."""
    from skewtune.cli.main import main
    from tests.test_token_classification import PEOPLE, PLACES, toy_sentences, write_conll

    data = write_conll(tmp_path / "toy.conll", toy_sentences(160, seed=3))
    out = tmp_path / "run"
    assert main(["train-tokens", "--dataset", str(data), "--backbone", str(tiny_bert), "--output_dir", str(out),
                 "--quant", "none", "--num_train_epochs", "15", "--learning_rate", "2e-2",
                 "--per_device_train_batch_size", "16", "--report_plots", "false", "--eval_every_epoch", "false",
                 "--loss", "sqrt_weighted_ce", "--o_weight", "0.3"]) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_entity_f1"] > 0.4
    config = json.loads((out / "config.json").read_text())
    assert config["loss"] == "sqrt_weighted_ce" and config["o_weight"] == 0.3
    texts = [f"  {PEOPLE[0]}   {PEOPLE[1]} visited\t{PLACES[0]} ,  then {PLACES[1]}!", "nothing   to see", ""]
    texts = [t for t in texts if t]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate(texts)))
    assert main(["predict", "--adapter", str(out / "adapter"), "--input", str(tmp_path / "in.jsonl"),
                 "--output", str(tmp_path / "pred.jsonl")]) == 0
    records = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == texts
    assert check_span_records(records, texts) > 0
    assert {s["type"] for s in records[0]["spans"]} <= {"PER", "LOC"} and records[0]["spans"]


# --------------------------------------------------------------------------------------------------- token loss
def test_weighted_token_loss_equals_a_hand_computation() -> None:
    from skewtune.tasks.token import TokenCrossEntropy, token_class_weights

    torch.manual_seed(0)
    labels_ = ["B-PER", "I-PER", "O"]
    counts = [10, 30, 960]
    logits = torch.randn(2, 5, 3)
    labels = torch.tensor([[-100, 0, 2, 2, -100], [2, 1, 1, 2, 2]])
    weights = token_class_weights("sqrt_weighted_ce", counts, labels_, o_weight=0.3)
    raw = torch.tensor([1 / 10 ** 0.5, 1 / 30 ** 0.5, 0.3 / 960 ** 0.5])
    assert torch.allclose(weights / weights.sum(), raw / raw.sum())  # (N / (C n_c))^0.5, O times 0.3
    inverse = token_class_weights("weighted_ce", counts, labels_)
    assert torch.allclose(inverse / inverse.sum(), torch.tensor([1 / 10, 1 / 30, 1 / 960]) / (1 / 10 + 1 / 30 + 1 / 960))
    num = den = 0.0
    for b in range(2):
        for t in range(5):
            y = int(labels[b, t])
            if y == -100:
                continue
            nll = -torch.log_softmax(logits[b, t], -1)[y].item()
            num, den = num + weights[y].item() * nll, den + weights[y].item()
    assert TokenCrossEntropy(weights)(logits, labels).item() == pytest.approx(num / den, rel=1e-6)
    # o_weight=1 with ce is plain cross-entropy (no weights at all); all-ones weights give the same number
    assert token_class_weights("ce", counts, labels_, o_weight=1.0) is None
    plain = TokenCrossEntropy()(logits, labels)
    assert TokenCrossEntropy(torch.ones(3))(logits, labels).item() == pytest.approx(plain.item(), rel=1e-6)
    flat = labels.reshape(-1)
    keep = flat != -100
    assert plain.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits.reshape(-1, 3)[keep], flat[keep]).item(), rel=1e-6)
    with pytest.raises(ConfigError, match="no 'O'"):
        token_class_weights("ce", [5, 5], ["NOUN", "VERB"], o_weight=0.5)
    with pytest.raises(ConfigError, match="positive"):
        token_class_weights("ce", counts, labels_, o_weight=0.0)
    with pytest.raises(ConfigError, match="not supported"):
        token_class_weights("focal", counts, labels_)


@pytest.mark.parametrize("flags,expect", [
    (["--loss", "focal"], "--loss focal is not supported for token classification"),
    (["--loss", "weighted_ce", "--loss_options", "power=0.5"], "--loss_options is not supported"),
    (["--o_weight", "-1"], "--o_weight must be a positive number"),
])
def test_token_loss_flags_fail_early(tmp_path: Path, capsys, flags: list[str], expect: str) -> None:
    from skewtune.cli.main import main

    data = tmp_path / "toy.conll"
    data.write_text("Ana B-PER\nsleeps O\n\nBo B-PER\nruns O\n\nCy B-PER\nhops O\n", encoding="utf-8")
    assert main(["train-tokens", "--dataset", str(data), "--output_dir", str(tmp_path / "out"), *flags]) == 2
    err = capsys.readouterr().err
    assert expect in err
    assert not (tmp_path / "out").exists()
