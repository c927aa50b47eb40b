"""The adapter card speaks the Hub's language (issue 18, interop details).

``render_card`` puts a Hugging Face ``model-index`` with the manifest's measured scores in the card's YAML
front matter; huggingface_hub itself parses it (``ModelCard``, ``model_index_to_eval_results``) and writes it
back unchanged (``eval_results_to_model_index``). The card's peft snippet loads a token-classification adapter
with its real label names (the sequence-classification case: tests/test_first_hour_sharing.py::
test_card_snippet_loads_offline_with_real_labels).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

from skewtune.adapters.io import model_index, render_card, write_manifest
from skewtune.utils.io import atomic_write_text
from tests.conftest import REPO
from tests.test_hub_support import _manifest, make_fake_adapter


def front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    return yaml.safe_load(card[4:card.index("\n---", 4)])


def hub_scores(card: str) -> dict[tuple[str, str], Any]:
    """``(dataset, metric name) -> EvalResult`` as huggingface_hub reads the card."""
    results = ModelCard(card).data.eval_results  # raises on a model-index the Hub would reject
    return {(r.dataset_name, r.metric_name): r for r in results or []}


# -------------------------------------------------- model-index
def test_model_index_of_a_published_adapter_parses_with_huggingface_hub() -> None:
    manifest = json.loads((REPO / "adapters/tweets-sentiment-minilm-lora/v1/skewtune.json").read_text())
    metrics = manifest["metrics"]
    card = render_card(manifest)
    index = front_matter(card)["model-index"]
    name, results = model_index_to_eval_results(index)
    assert name == manifest["name"] == "tweets-sentiment-minilm-lora"
    assert {(r.task_type, r.task_name, r.dataset_type, r.dataset_name, r.dataset_split) for r in results} == {
        ("text-classification", "Text Classification", "tweets", "tweets", "test")}
    assert metrics["eval_split"] == "test"
    by_name = {r.metric_name: r for r in results}
    assert set(by_name) == {"Accuracy (test)", "Macro F1 (test)", "Weighted F1 (test)"}
    assert (by_name["Accuracy (test)"].metric_type, by_name["Accuracy (test)"].metric_value) == (
        "accuracy", metrics["eval_accuracy"])
    assert (by_name["Macro F1 (test)"].metric_type, by_name["Macro F1 (test)"].metric_args,
            by_name["Macro F1 (test)"].metric_value) == ("f1", {"average": "macro"}, metrics["eval_macro_f1"])
    assert (by_name["Weighted F1 (test)"].metric_args, by_name["Weighted F1 (test)"].metric_value) == (
        {"average": "weighted"}, metrics["eval_weighted_f1"])
    # huggingface_hub writes the same model-index back, and ModelCard reads the same results
    assert eval_results_to_model_index(name, results) == index
    assert {k: r.metric_value for k, r in hub_scores(card).items()} == {
        ("tweets", r.metric_name): r.metric_value for r in results}
    assert ModelCard(card).data.pipeline_tag == "text-classification"


def test_token_classification_card_has_its_task_and_entity_scores() -> None:
    metrics = {"eval_split": "test", "eval_accuracy": 0.91, "eval_macro_f1": 0.7, "eval_entity_f1": 0.55,
               "eval_num_tokens": 1200, "baseline_majority_macro_f1": 0.1}
    manifest = _manifest(task_type="token_cls", dataset="de_tiger", name="tagger", metrics=metrics)
    results = model_index_to_eval_results(front_matter(render_card(manifest))["model-index"])[1]
    assert {r.task_type for r in results} == {"token-classification"}
    assert {r.task_name for r in results} == {"Token Classification"}
    assert {(r.metric_type, r.metric_name, r.metric_value) for r in results} == {
        ("accuracy", "Accuracy (test)", 0.91), ("f1", "Macro F1 (test)", 0.7),
        ("f1", "seqeval entity F1 (test)", 0.55)}
    assert {r.dataset_name for r in results} == {"de_tiger"}


def test_multi_task_merge_scores_give_one_result_per_task_dataset() -> None:
    merge_eval = {
        "sentiment": {"dataset": "tweets", "merged": {"accuracy": 0.6, "macro_f1": 0.5, "split": "test"}},
        "polarity": {"dataset": "pang_lee", "merged": {"accuracy": 0.8, "macro_f1": 0.79, "split": "test"}},
    }
    manifest = _manifest(name="merge-ties", dataset=None, metrics={
        "eval_sentiment_accuracy": 0.6, "eval_sentiment_macro_f1": 0.5,
        "eval_polarity_accuracy": 0.8, "eval_polarity_macro_f1": 0.79, "merge_eval": merge_eval})
    card = render_card(manifest)
    scores = hub_scores(card)
    assert {k: r.metric_value for k, r in scores.items()} == {
        ("tweets", "Accuracy (test)"): 0.6, ("tweets", "Macro F1 (test)"): 0.5,
        ("pang_lee", "Accuracy (test)"): 0.8, ("pang_lee", "Macro F1 (test)"): 0.79}
    assert len(front_matter(card)["model-index"][0]["results"]) == 2


def test_unmeasured_or_invalid_scores_are_left_out() -> None:
    card = render_card(_manifest(metrics={}))
    assert "model-index" not in front_matter(card) and ModelCard(card).data.eval_results is None
    manifest = _manifest(metrics={"eval_accuracy": float("nan"), "eval_macro_f1": True,  # and no eval_split
                                  "eval_weighted_f1": "0.5", "eval_balanced_accuracy": 0.75})
    [entry] = model_index(manifest)
    [result] = entry["results"]
    assert result["dataset"] == {"name": "tweets", "type": "tweets"}
    assert result["metrics"] == [{"type": "balanced_accuracy", "value": 0.75, "name": "Balanced accuracy"}]
    assert all(math.isfinite(m["value"]) for m in result["metrics"])
    assert model_index(_manifest(dataset=None)) == []  # scores without a dataset cannot be placed
    assert hub_scores(render_card(manifest))[("tweets", "Balanced accuracy")].dataset_split is None
    assert model_index(_manifest(metrics=[0.5])) == []
    for odd in ({"merge_eval": {"a": [1], "b": "x"}, "eval_a_accuracy": 0.5}, {"merge_eval": {"a": None}}):
        assert "model-index" not in front_matter(render_card(_manifest(metrics=odd, dataset=None)))


def test_model_index_survives_a_hub_push_with_extra_tags(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from skewtune import hub

    monkeypatch.setenv("SKEWTUNE_CACHE", str(tmp_path / "cache"))
    adapter = make_fake_adapter(tmp_path / "fake", metrics={"eval_split": "test", "eval_accuracy": 0.85,
                                                            "eval_macro_f1": 0.8})
    before = front_matter((adapter / "README.md").read_text())
    url = str(tmp_path / "hub")
    hub.push(adapter, url, "fake-tweets", tags=["interop"])  # the card's front matter is re-tagged on push
    pulled = front_matter((Path(hub.pull("fake-tweets", url)) / "README.md").read_text())
    assert "interop" in pulled["tags"] and "interop" not in before["tags"]
    assert pulled["model-index"] == before["model-index"]
    assert {r.metric_value for r in model_index_to_eval_results(pulled["model-index"])[1]} == {0.85, 0.8}


# -------------------------------------------------- peft snippet
def test_token_card_snippet_loads_the_adapter_with_real_label_names(tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import BertConfig, BertForTokenClassification, BertModel

    torch.manual_seed(0)
    base_dir = tmp_path / "base"  # a bare backbone, as skewtune's are: no head, no label names
    BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(base_dir)
    labels = {"0": "NOUN", "1": "VERB", "2": "ADJ", "3": "PUNCT"}
    trained = get_peft_model(BertForTokenClassification.from_pretrained(base_dir, num_labels=4),
                             LoraConfig(task_type=TaskType.TOKEN_CLS, r=2, lora_alpha=4,
                                        target_modules=["query", "value"])).eval()
    adapter_dir = tmp_path / "adapter"
    trained.save_pretrained(adapter_dir)
    manifest = _manifest(task_type="token_cls", id2label=labels, base_model="org/not-on-this-machine",
                         base_path=str(base_dir), dataset="upos_en")
    atomic_write_text(adapter_dir / "README.md", render_card(manifest))
    write_manifest(adapter_dir, manifest)

    code = (adapter_dir / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    assert "AutoModelForTokenClassification" in code
    assert "org/not-on-this-machine" in code  # named in a comment, not loaded
    scope: dict[str, Any] = {}
    exec(code.replace("<this folder>", str(adapter_dir)), scope)  # noqa: S102 - the card's own snippet
    model = scope["model"]
    assert type(model.get_base_model()).__name__ == "BertForTokenClassification"
    assert model.config.id2label == {int(k): v for k, v in labels.items()}
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    with torch.no_grad():
        logits = model(ids).logits
        expected = trained(ids).logits
    assert logits.shape == (1, 5, 4)
    torch.testing.assert_close(logits, expected)  # the adapter's own head and LoRA weights, not fresh ones
    assert {model.config.id2label[int(i)] for i in logits.argmax(-1)[0]} <= set(labels.values())
