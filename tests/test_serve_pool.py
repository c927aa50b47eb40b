"""skewtune.serve in process: one backbone shared by adapters with different label sets, mixed-adapter forward
passes equal to one `skewtune predict` model per adapter, DoRA and IA3 beside them, length grouping, the app's
refusals (TestClient; the real server is tested in tests/test_serve_server.py)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import torch

from skewtune.adapters.io import write_manifest
from skewtune.backbones import base_fingerprint
from skewtune.errors import AdapterError, ConfigError
from skewtune.inference import load_adapter
from skewtune.serve.batcher import MicroBatcher, _Item, _Job
from skewtune.serve.pool import AdapterPool, RoutedModule, Router

TEXTS = ["great movie, loved it", "awful food and slow service", "the train leaves at nine",
         "not bad at all", "terrible, terrible, terrible day " * 6, "ok"]


def make_adapter(base: Path, folder: Path, labels: list[str], *, kind: str = "lora", seed: int = 0,
                 targets: tuple[str, ...] = ("query", "value"), decision: dict | None = None,
                 task: str = "seq_cls", max_length: int = 16) -> Path:
    """A peft adapter on the tiny BERT (classifier, or tagger with ``task="token_cls"``) with non-zero (random)
    weights and a skewtune manifest."""
    from peft import IA3Config, LoraConfig, TaskType, get_peft_model
    from transformers import BertForSequenceClassification, BertForTokenClassification

    torch.manual_seed(seed)
    head = BertForTokenClassification if task == "token_cls" else BertForSequenceClassification
    task_type = TaskType.TOKEN_CLS if task == "token_cls" else TaskType.SEQ_CLS
    model = head.from_pretrained(str(base), num_labels=len(labels))
    if kind == "ia3":
        config = IA3Config(task_type=task_type, target_modules=["key", "value", "output.dense"],
                           feedforward_modules=["output.dense"], init_ia3_weights=False)
    else:
        config = LoraConfig(task_type=task_type, r=4, lora_alpha=8, target_modules=list(targets),
                            init_lora_weights=False, use_dora=kind == "dora")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # a trained-looking head
        for name, param in peft_model.named_parameters():
            if "modules_to_save" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(folder)
    write_manifest(folder, {
        "name": folder.name, "task_type": task, "backbone": str(base), "base_model": "tiny-bert",
        "base_fingerprint": base_fingerprint(str(base)), "adapter_type": kind, "quant": "none",
        "id2label": {str(i): lab for i, lab in enumerate(labels)}, "languages": ["en"],
        "training": {"max_length": max_length}, "metrics": {}, "decision": decision, "lineage": None})
    return folder


@pytest.fixture(scope="module")
def adapters(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-adapters")
    return {
        "sent3": make_adapter(tiny_bert, root / "sent3", ["negative", "neutral", "positive"], seed=1),
        "pol2": make_adapter(tiny_bert, root / "pol2", ["neg", "pos"], seed=2, targets=("query", "key", "dense")),
        "dora4": make_adapter(tiny_bert, root / "dora4", list("abcd"), kind="dora", seed=3),
        "ia3": make_adapter(tiny_bert, root / "ia3", ["x", "y"], kind="ia3", seed=4),
        "decided": make_adapter(tiny_bert, root / "decided", ["neg", "pos"], seed=5,
                                decision={"method": "logit_bias", "logit_bias": [-3.0, 3.0]}),
    }


def expected(folder: Path, texts: list[str]) -> list[dict]:
    return load_adapter(folder).predict(texts)


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert [g["label"] for g in got] == [w["label"] for w in want]
    for g, w in zip(got, want):
        assert g["probabilities"].keys() == w["probabilities"].keys()
        for label, p in w["probabilities"].items():
            assert g["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_mixed_batches_equal_one_model_per_adapter(adapters: dict[str, Path]) -> None:
    pool = AdapterPool()
    served = {name: pool.add(folder) for name, folder in adapters.items()}
    assert len(pool.backbones) == 1  # LoRA, DoRA and the decision-rule adapter share one backbone
    assert served["ia3"].solo is not None and served["sent3"].solo is None
    assert served["sent3"].mixable and served["pol2"].mixable and not served["dora4"].mixable
    assert served["sent3"].lane == served["pol2"].lane != served["dora4"].lane
    # one forward pass over interleaved rows of three adapters with 3, 2 and 2 labels (one with a decision rule)
    names = ["sent3", "pol2", "decided"]
    rows, want = [], {n: expected(adapters[n], TEXTS) for n in [*names, "dora4", "ia3"]}
    for i, text in enumerate(TEXTS * 2):
        s = served[names[i % 3]]
        rows.append((s, pool.encode(s, [text])[0][0]))
    got = pool.predict_rows(rows)
    for i, record in enumerate(got):
        assert_same([record], [want[names[i % 3]][i % len(TEXTS)]])
    for name in ("dora4", "ia3"):  # their own lanes
        s = served[name]
        assert_same(pool.predict_rows([(s, ids) for ids in pool.encode(s, TEXTS)[0]]), want[name])
    # the decision rule was applied: a bias of +6 logits towards 'pos' makes every text 'pos'
    assert {r["label"] for r in want["decided"]} == {"pos"}


def test_truncation_is_reported_and_matches_predict(adapters: dict[str, Path]) -> None:
    pool = AdapterPool()
    s = pool.add(adapters["sent3"])
    ids, cut = pool.encode(s, TEXTS)
    assert cut == [4] and max(len(x) for x in ids) == 16  # max_length 16 as trained
    assert_same(pool.predict_rows([(s, x) for x in ids]), expected(adapters["sent3"], TEXTS))


def test_remove_frees_backbone_and_refuses_stale_rows(adapters: dict[str, Path]) -> None:
    pool = AdapterPool()
    a, b = pool.add(adapters["sent3"]), pool.add(adapters["pol2"])
    ids, _ = pool.encode(a, TEXTS[:2])
    pool.remove("sent3")
    with pytest.raises(KeyError):
        pool.predict_rows([(a, ids[0])])
    assert_same(pool.predict_rows([(b, x) for x in pool.encode(b, TEXTS)[0]]), expected(adapters["pol2"], TEXTS))
    pool.remove("pol2")
    assert not pool.backbones and not pool.adapters
    again = pool.add(adapters["sent3"])  # a fresh backbone after the last one went
    assert_same(pool.predict_rows([(again, x) for x in pool.encode(again, TEXTS)[0]]), expected(adapters["sent3"], TEXTS))


def test_per_adapter_engine_loads_one_model_each(adapters: dict[str, Path]) -> None:
    pool = AdapterPool(engine="per_adapter")
    a, b = pool.add(adapters["sent3"]), pool.add(adapters["pol2"])
    assert a.solo is not None and b.solo is not None and a.lane != b.lane and not pool.backbones
    assert_same(pool.predict_rows([(a, x) for x in pool.encode(a, TEXTS)[0]]), expected(adapters["sent3"], TEXTS))


def test_refusals_leave_the_pool_unchanged(adapters: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    pool = AdapterPool()
    pool.add(adapters["sent3"])
    with pytest.raises(ConfigError, match="already loaded"):
        pool.add(adapters["sent3"])
    with pytest.raises(ConfigError, match="not allowed"):
        pool.add(adapters["pol2"], name="../x")
    tampered = shutil.copytree(adapters["pol2"], tmp_path / "tampered")
    data = bytearray((tampered / "adapter_model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (tampered / "adapter_model.safetensors").write_bytes(bytes(data))
    with pytest.raises(AdapterError):
        pool.add(tampered)
    from skewtune.adapters.io import read_manifest

    tagger = shutil.copytree(adapters["pol2"], tmp_path / "tagger")
    manifest = read_manifest(tagger)
    manifest["task_type"] = "token_cls"
    write_manifest(tagger, manifest)
    with pytest.raises(AdapterError, match="match no layer"):  # a classifier's weights called a tagger
        pool.add(tagger)
    assert list(pool.adapters) == ["sent3"] and len(pool.backbones) == 1
    with pytest.raises(ConfigError):
        AdapterPool(engine="fast")


def test_routed_module_pads_heads_of_different_widths() -> None:
    router = Router()
    routed = RoutedModule(torch.nn.Linear(4, 2), router)
    routed.copies["a"] = torch.nn.Linear(4, 3)
    routed.copies["b"] = torch.nn.Linear(4, 1)
    x = torch.randn(5, 4)
    router.set(["a", "b", "a", "base", "b"], x.device)
    out = routed(x)
    assert out.shape == (5, 3)
    assert torch.allclose(out[[0, 2]], routed.copies["a"](x[[0, 2]]))
    assert torch.allclose(out[[1, 4], :1], routed.copies["b"](x[[1, 4]])) and not out[[1, 4], 1:].any()
    assert torch.allclose(out[3, :2], routed.base(x[3]))
    router.groups = None
    assert torch.allclose(routed(x), routed.base(x))


def _items(lengths: list[int]) -> list[_Item]:
    loop = asyncio.new_event_loop()
    try:
        job = _Job(served=None, ids=[[1] * n for n in lengths], top_k=None, future=loop.create_future(), loop=loop)
    finally:
        loop.close()
    return [_Item(job, row, 0.0) for row in range(len(lengths))]


def test_length_grouping_cuts_where_padding_costs_more_than_a_pass() -> None:
    batcher = MicroBatcher(pool=None, max_batch_size=64, max_batch_tokens=4096, pass_overhead_tokens=64)
    lengths = [10] * 20 + [120] * 3
    chunks = batcher._chunks(_items(lengths))
    assert [sorted({it.length for it in c}) for c in chunks] == [[10], [120]]  # not 23 rows padded to 120
    assert batcher._chunks(_items([10, 12, 11, 13])) and len(batcher._chunks(_items([10, 12, 11, 13]))) == 1
    small = MicroBatcher(pool=None, max_batch_size=4, max_batch_tokens=4096)
    chunks = small._chunks(_items([5] * 10))
    assert [len(c) for c in chunks] == [2, 4, 4] or all(len(c) <= 4 for c in chunks)
    assert sorted(it.row for c in chunks for it in c) == list(range(10))
    capped = MicroBatcher(pool=None, max_batch_size=64, max_batch_tokens=100)
    assert all(len(c) * max(it.length for it in c) <= 100 for c in capped._chunks(_items([30] * 9)))


def test_app_refusals_in_process(adapters: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from skewtune.serve.app import ServeSettings, create_app

    pool = AdapterPool()
    pool.add(adapters["sent3"])
    gate, entered = threading.Event(), threading.Event()
    real = pool.predict_rows

    def slow(rows, top_k=None):  # hold the worker so the queue fills deterministically
        entered.set()
        gate.wait(10)
        return real(rows, top_k)

    monkeypatch.setattr(pool, "predict_rows", slow)
    settings = ServeSettings(max_queue_texts=3, max_texts_per_request=3, max_wait_ms=0)
    app = create_app(pool, settings)
    with TestClient(app) as client:
        results: list[int] = []

        def ask() -> None:
            results.append(client.post("/v1/predict", json={"adapter": "sent3", "texts": ["a b", "c d", "e f"]})
                           .status_code)

        first = threading.Thread(target=ask)
        first.start()
        assert entered.wait(20)  # the worker holds the first request
        second = threading.Thread(target=ask)
        second.start()
        for _ in range(400):  # the second request's 3 texts fill the queue
            if app.state.batcher.queued_texts == 3:
                break
            threading.Event().wait(0.025)
        refused = client.post("/v1/predict", json={"adapter": "sent3", "text": "x"})
        gate.set()
        for t in (first, second):
            t.join(20)
        assert sorted(results) == [200, 200]
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.json() == {"error": "error: the queue is full (3 texts waiting) (fix: retry after the "
                                           "Retry-After seconds, or send fewer texts at once)"}
        ok = client.post("/v1/predict", json={"adapter": "sent3", "texts": TEXTS[:2], "top_k": 1})
        assert ok.status_code == 200 and all(len(p["probabilities"]) == 1 for p in ok.json()["predictions"])


def test_merged_engine_equals_predict_merge(adapters: dict[str, Path]) -> None:
    pool = AdapterPool(engine="merged")
    s = pool.add(adapters["sent3"])
    assert s.solo is not None and not pool.backbones
    want = load_adapter(adapters["sent3"], merge=True).predict(TEXTS)
    assert_same(pool.predict_rows([(s, x) for x in pool.encode(s, TEXTS)[0]]), want)


@pytest.mark.parametrize("argv, fragment", [
    ([], "no adapter to serve"),
    (["--adapter", "/no/such/folder"], "is not a folder"),
    (["--pull", "x"], "--pull needs a --hub"),
    (["--adapter", ".", "--port", "70000"], "--port must be 0-65535"),
])
def test_serve_command_refuses_bad_flags_in_one_line(argv: list[str], fragment: str) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "skewtune.cli.main", "serve", *argv], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and fragment in done.stderr


def test_serve_command_refuses_a_port_in_use(adapters: dict[str, Path]) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "skewtune.cli.main", "serve", "--adapter", str(adapters["sent3"]),
                               "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert done.stderr.count("\n") == 1


def test_listening_beyond_loopback_without_a_key_warns() -> None:
    from skewtune.cli.serve import exposure_warning

    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("localhost", None) is None and exposure_warning("0.0.0.0", "k") is None
    for host in ("0.0.0.0", "::", "192.0.2.7", "myhost.example"):
        line = exposure_warning(host, None)
        assert line is not None and line.startswith(f"warning: serving on {host} without --api_key")


def make_tagger(base: Path, folder: Path, labels: list[str], seed: int) -> Path:
    """A LoRA tagging adapter on the tiny BERT, trained at 12 tokens per text."""
    return make_adapter(base, folder, labels, seed=seed, task="token_cls", max_length=12)


def test_tagging_adapters_share_a_backbone_and_tag_as_training_evaluation_does(
        tiny_bert: Path, adapters: dict[str, Path], tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoTokenizer, BertForTokenClassification

    from skewtune.data.batching import PaddingCollator
    from skewtune.data.tokens import decode_predictions, tokenize_token_split
    from skewtune.inference.logits import predict_logits

    taggers = {"pos3": make_tagger(tiny_bert, tmp_path / "pos3", ["NOUN", "VERB", "X"], 7),
               "ner5": make_tagger(tiny_bert, tmp_path / "ner5", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], 8)}
    texts = ["Ana flew to Lisbon on Monday", "the cats sleep", "a very long sentence " * 4]
    pool = AdapterPool()
    served = {name: pool.add(folder) for name, folder in taggers.items()}
    classifier = pool.add(adapters["sent3"])
    assert served["pos3"].lane == served["ner5"].lane != classifier.lane  # one tagging backbone, mixed batches
    rows = [(served[name], enc) for name in ("pos3", "ner5") for enc in pool.encode(served[name], texts)[0]]
    got = pool.predict_rows(rows)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    for k, name in enumerate(("pos3", "ner5")):
        labels = served[name].labels
        sentences = [(t.split(), [labels[0]] * len(t.split())) for t in texts]
        data = tokenize_token_split(tokenizer, sentences, {lab: i for i, lab in enumerate(labels)}, 12, "ref")
        model = PeftModel.from_pretrained(
            BertForTokenClassification.from_pretrained(str(tiny_bert), num_labels=len(labels)), taggers[name]).eval()
        logits = predict_logits(model, data, PaddingCollator(tokenizer.pad_token_id), 8, torch.device("cpu"))
        want = decode_predictions(logits, data, dict(enumerate(labels)), missing=None)
        records = got[k * len(texts):(k + 1) * len(texts)]
        assert [r["words"] for r in records] == [t.split() for t in texts]
        assert [r["tags"] for r in records] == want
    assert None in got[2]["tags"]  # the long text's last words were cut off at 12 tokens
    assert pool.encode(served["pos3"], texts)[1] == [2]
    from starlette.testclient import TestClient

    from skewtune.serve.app import create_app

    with TestClient(create_app(pool)) as client:
        answer = client.post("/v1/predict", json={"adapter": "ner5", "texts": texts})
    assert answer.status_code == 200 and answer.json()["predictions"] == got[len(texts):]
    assert answer.json()["truncated"] == [2]


def test_predict_command_tags_words_with_a_tagging_adapter(tiny_bert: Path, tmp_path: Path, capsys) -> None:
    """`skewtune predict` on a tagging adapter: one record per input row, its columns kept (a `tags` column renamed
    input_tags), words and tags as the serving engine gives them."""
    import json

    from skewtune.cli.main import main

    tagger = make_tagger(tiny_bert, tmp_path / "tagger", ["O", "B-PER", "I-PER"], 9)
    texts = ["Ana met Bruno in Porto", "nobody here", "word " * 20]
    rows = [{"id": i, "text": t, "tags": "gold"} for i, t in enumerate(texts)]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--adapter", str(tagger), "--input", str(tmp_path / "in.jsonl"), "--output", str(out),
                 "--batch_size", "2"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    pool = AdapterPool()
    served = pool.add(tagger)
    want = pool.predict_rows([(served, e) for e in pool.encode(served, texts)[0]])
    assert [r["id"] for r in records] == [0, 1, 2] and all(r["input_tags"] == "gold" for r in records)
    assert [{k: r[k] for k in want[0]} for r in records] == want  # words, tags (and spans for BIO tags)
    assert "1 of 3 texts are longer than 12 tokens" in capsys.readouterr().err
    assert main(["predict", "--adapter", str(tagger), "--input", str(tmp_path / "in.jsonl"), "--output",
                 str(tmp_path / "o2.jsonl"), "--merge"]) == 2
