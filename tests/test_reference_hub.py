"""The repository's own hub (top-level ``adapters/``): reference adapters pull, verify and predict offline.

Built by scripts/build_reference_adapters.py with the main recipe (MiniLM 8-bit LoRA). Pulls go to tmp folders;
the hub itself is only read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import skewtune.hub as hub
from skewtune.cli.main import main as cli_main
from tests.conftest import REPO

HUB = REPO / "adapters"
# obvious examples per reference adapter: (text, expected label)
REFERENCES = {
    "tweets-sentiment-minilm-lora": {
        "dataset": "tweets",
        "labels": ["negative", "neutral", "positive"],
        "examples": [("I love this, great job", "positive"),
                     ("Thank you so much, the flight crew was amazing and wonderful", "positive"),
                     ("This is the worst airline ever, I hate it, terrible service", "negative")],
    },
    "pang-lee-polarity-minilm-lora": {
        "dataset": "pang_lee",
        "labels": ["negative", "positive"],
        "examples": [("a wonderful , moving film with brilliant performances", "positive"),
                     ("a dull , boring and painfully bad movie", "negative")],
    },
}


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reference")
    return {name: hub.pull(name, str(HUB), root / name) for name in REFERENCES}


def test_hub_index_lists_every_reference_adapter() -> None:
    rows = {row["name"]: row for row in hub.ls(str(HUB))}
    assert set(REFERENCES) <= set(rows)
    for name, spec in REFERENCES.items():
        row = rows[name]
        assert row["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and row["backbone"] == "minilm"
        assert row["adapter_type"] == "lora" and row["quant"] == "8bit" and row["task_type"] == "seq_cls"
        assert row["labels"] == spec["labels"] and row["languages"] == ["en"] and row["dataset"] == spec["dataset"]
        assert "reference" in row["tags"] and "sentiment" in row["tags"]
        assert row["metrics"]["eval_macro_f1"] > row["metrics"]["baseline_majority_macro_f1"] + 0.2
        assert row["size_bytes"] < 2_000_000
    found = hub.search(str(HUB), base_model="minilm", language="en", labels=["negative", "neutral", "positive"])
    assert found and found[0]["name"] == "tweets-sentiment-minilm-lora"
    # small and clean: index + version folders only (no lock file, no partial uploads), a few MB in all
    files = [p for p in HUB.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5_000_000
    assert {p.relative_to(HUB).parts[0] for p in files} == {"index.json", *rows}
    index = json.loads((HUB / "index.json").read_text())
    stamps = {index["updated_at"]} | {v["pushed_at"] for a in index["adapters"].values() for v in a["versions"]}
    assert len(stamps) == 1, "SOURCE_DATE_EPOCH pins every index timestamp"


def test_pulled_adapters_verify_and_match_installed_minilm(pulled: dict[str, Path]) -> None:
    for name, folder in pulled.items():
        manifest = hub.verify(folder)  # every file's sha256 against the manifest, safetensors only
        assert manifest["name"] == name
        assert hub.check_base_compatible(folder, "minilm") is True  # fingerprint of the installed MiniLM
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert "base_path" not in manifest  # no path of the machine that built it
        settings = manifest["reference"]["settings"]
        assert settings["seed"] == 42 and settings["dataset"] == REFERENCES[name]["dataset"]
        card = (folder / "README.md").read_text()
        assert card.startswith("---\n") and "## Reference adapter" in card and "library_name: peft" in card


def test_reference_adapters_predict_obvious_examples(pulled: dict[str, Path]) -> None:
    import skewtune

    for name, spec in REFERENCES.items():
        classifier = skewtune.load_adapter(pulled[name])
        texts = [t for t, _ in spec["examples"]]
        got = [p["label"] for p in classifier.predict(texts)]
        assert got == [label for _, label in spec["examples"]], (name, got)


def test_cli_ls_pull_predict_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["hub", "ls", "--hub", str(HUB)]) == 0
    listing = capsys.readouterr().out
    assert all(f"{name}@v" in listing for name in REFERENCES)
    dest = tmp_path / "tweets"
    assert cli_main(["hub", "pull", "tweets-sentiment-minilm-lora", "--hub", str(HUB), "--dest", str(dest),
                     "--base", "minilm"]) == 0
    assert capsys.readouterr().out.strip() == str(dest)
    inputs = tmp_path / "texts.txt"
    inputs.write_text("I love this, great job\n")
    out = tmp_path / "predictions.jsonl"
    assert cli_main(["predict", "--adapter", str(dest), "--input", str(inputs), "--output", str(out)]) == 0
    row = json.loads(out.read_text().splitlines()[0])
    assert row["label"] == "positive" and set(row["probabilities"]) == set(REFERENCES["tweets-sentiment-minilm-lora"]["labels"])
