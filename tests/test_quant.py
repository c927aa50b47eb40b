"""Quantized backbones: int8/NF4 word embeddings, 4-bit training on CPU, the bitsandbytes probe, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from skewtune.backbones import load_backbone, resolve_backbone
from skewtune.backbones import quant as q
from skewtune.cli.main import main as cli_main
from tests.conftest import make_texts, tiny_args


@pytest.fixture(scope="module")
def embedding() -> torch.nn.Embedding:
    torch.manual_seed(0)
    return torch.nn.Embedding(300, 128, padding_idx=0)


def test_int8_embedding_error_bound_and_gather(embedding: torch.nn.Embedding) -> None:
    module = q.Int8Embedding.from_embedding(embedding)
    w = embedding.weight.detach()
    assert module.weight.dtype == torch.int8 and not module.weight.requires_grad
    # |Ŵ − W| ≤ s_i / 254 per row (half an int8 step)
    bound = w.abs().amax(1, keepdim=True) / 254 + 1e-7
    assert ((module.dequantized_weight() - w).abs() <= bound).all()
    ids = torch.tensor([[0, 5, 299], [7, 7, 1]])
    assert torch.equal(module(ids), module.dequantized_weight()[ids])
    assert module(ids).dtype == torch.float32


def test_nf4_embedding_matches_bitsandbytes(embedding: torch.nn.Embedding) -> None:
    import bitsandbytes.functional as bnbf

    assert torch.allclose(torch.tensor(q.NF4_LEVELS), bnbf.get_4bit_type("nf4", device="cpu"))
    module = q.NF4Embedding.from_embedding(embedding)
    w = embedding.weight.detach().contiguous()
    packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
    assert torch.equal(module.dequantized_weight(), bnbf.dequantize_4bit(packed, state))
    ids = torch.tensor([3, 299, 0])
    assert torch.equal(module(ids), module.dequantized_weight()[ids])
    assert module.weight.dtype == torch.uint8 and module.weight.shape == (300, 64)


@pytest.mark.parametrize("cls", [q.Int8Embedding, q.NF4Embedding])
def test_quantized_embedding_state_dict_roundtrip(embedding: torch.nn.Embedding, cls: type) -> None:
    source = cls.from_embedding(embedding)
    state = source.state_dict()
    assert "levels" not in state  # a constant, not saved
    target = cls(300, 128)
    target.load_state_dict(state)
    ids = torch.arange(300)
    assert torch.equal(target(ids), source(ids))


def test_prepare_for_kbit_training_upcasts_only_vectors() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.LayerNorm(8)).to(torch.bfloat16)
    q.prepare_for_kbit_training(model)
    assert model[0].weight.dtype == torch.bfloat16  # matrices stay as loaded: no inflation
    assert model[1].weight.dtype == torch.float32 and model[1].bias.dtype == torch.float32
    assert not any(p.requires_grad for p in model.parameters())


def test_bitsandbytes_probe_passes_and_leaves_the_rng_alone() -> None:
    torch.manual_seed(7)
    state = torch.get_rng_state()
    q._probe.cache_clear()
    q.check_bitsandbytes("8bit")
    q.check_bitsandbytes("4bit")
    assert torch.equal(torch.get_rng_state(), state)  # seeded head initialisation stays reproducible


def test_resolve_quantize_embeddings() -> None:
    from skewtune.backbones.modes import resolve_quantize_embeddings
    from skewtune.errors import ConfigError

    assert resolve_quantize_embeddings("8bit", None) and resolve_quantize_embeddings("4bit", None)
    assert not resolve_quantize_embeddings("none", None) and not resolve_quantize_embeddings("8bit", False)
    with pytest.raises(ConfigError, match="needs a quantized backbone"):
        resolve_quantize_embeddings("none", True)


@pytest.mark.parametrize("mode,linear,emb", [("8bit", "Linear8bitLt", q.Int8Embedding), ("4bit", "Linear4bit", q.NF4Embedding)])
def test_tiny_backbone_quantized_embeddings(tiny_bert: Path, mode: str, linear: str, emb: type) -> None:
    spec = resolve_backbone(str(tiny_bert))
    plain = load_backbone(spec, num_labels=2, quant=mode)
    small = load_backbone(spec, num_labels=2, quant=mode, quantize_embeddings=True)
    assert type(small.bert.encoder.layer[0].attention.self.query).__name__ == linear
    assert isinstance(small.get_input_embeddings(), emb)
    assert isinstance(small.bert.embeddings.position_embeddings, torch.nn.Embedding)  # small tables stay fp32
    assert small.classifier.weight.dtype == torch.float32
    # the tiny backbone is almost all word embedding (30522×32): int8 ≈ ¼, NF4 ≈ ⅛ of it
    assert small.get_memory_footprint() < 0.4 * plain.get_memory_footprint()
    ids = torch.tensor([[101, 2307, 2154, 102]])
    with torch.inference_mode():
        a, b = plain.bert.embeddings.word_embeddings(ids), small.bert.embeddings.word_embeddings(ids)
    assert (a - b).abs().max() < (0.02 if mode == "8bit" else 0.3) * a.abs().max()


def test_minilm_8bit_with_int8_embeddings_under_035(tmp_path: Path) -> None:
    """The issue's goal: 8-bit MiniLM ≤ 0.35× its fp32 bytes (``get_memory_footprint``: parameters + buffers)."""
    spec = resolve_backbone("minilm")
    fp32 = load_backbone(spec, num_labels=3, quant="none").get_memory_footprint()
    int8 = load_backbone(spec, num_labels=3, quant="8bit", quantize_embeddings=True)
    assert int8.get_memory_footprint() <= 0.35 * fp32, int8.get_memory_footprint() / fp32


def test_4bit_lora_trains_on_cpu_and_reloads_with_vanilla_peft(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    """NF4 + double quantization + NF4 embeddings (default) trains LoRA on CPU; vanilla peft loads it on fp32."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    import skewtune

    out = tmp_path / "nf4"
    # two epochs with validation in between: train → eval → train (bitsandbytes' CPU repacking broke this)
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, "--quant", "4bit", "--num_train_epochs", "2")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quant"] == "4bit" and metrics["quantize_embeddings"] is True
    assert metrics["eval_macro_f1"] > 0.8
    assert metrics["backbone_bytes"] < 1.0e6  # fp32 tiny backbone: 4.0 MB
    texts, _ = make_texts(40, seed=5)
    ours = skewtune.load_adapter(out / "adapter", quant="none")
    vanilla = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2), str(out / "adapter")).eval()
    # packed 4-bit weights (Linear4bit, NF4 embeddings) count as the weights they hold: the fp32 model's count
    assert metrics["all_params"] == sum(p.numel() for p in vanilla.parameters())
    tokens = ours.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        expected = vanilla(**tokens).logits
    assert torch.allclose(ours.logits(texts), expected, atol=1e-5)
    nf4 = skewtune.load_adapter(out / "adapter")
    agree = (nf4.logits(texts).argmax(-1) == expected.argmax(-1)).float().mean().item()
    assert agree >= 0.9


def test_4bit_layer_trains_after_eval(tiny_bert: Path) -> None:
    """``keep_cpu_4bit_trainable``: an eval pass leaves ``Linear4bit`` on the dequantize path, so training continues."""
    model = load_backbone(resolve_backbone(str(tiny_bert)), num_labels=2, quant="4bit")
    layer = model.bert.encoder.layer[0].attention.self.query
    x = torch.randn(3, 32, requires_grad=True)
    before = layer(x)
    layer.eval()
    with torch.inference_mode():
        evaluated = layer(x.detach())
    layer.train()
    after = layer(x)
    after.sum().backward()
    assert torch.equal(before, evaluated) and torch.equal(before, after) and x.grad is not None
    assert not getattr(layer.weight.quant_state, "packing_format_for_cpu", False)


def _int8_linear(in_features: int = 48, out_features: int = 40, bias: bool = True):
    import bitsandbytes as bnb

    torch.manual_seed(0)
    dense = torch.nn.Linear(in_features, out_features, bias=bias)
    layer = bnb.nn.Linear8bitLt(in_features, out_features, bias=bias, has_fp16_weights=False, threshold=0.0)
    layer.load_state_dict(dense.state_dict())
    layer = layer.to("cpu")
    for p in layer.parameters():
        p.requires_grad_(False)
    layer(torch.zeros(1, in_features))  # moves CB / SCB into the layer's state
    return layer


def test_cpu_int8_matmul_is_bitsandbytes_dequantize_path_in_both_modes() -> None:
    """``patch_cpu_int8_matmul``: outputs and input gradients bit-equal to bitsandbytes' own ``MatMul8bitFp`` (the
    same GEMM calls), equal to an fp32 linear with the dequantized weight within float rounding; the same route in
    eval mode."""
    import bitsandbytes.autograd._functions as bnb_functions

    from skewtune.backbones.bnb_compat import patch_cpu_int8_matmul

    assert patch_cpu_int8_matmul()
    layer = _int8_linear()
    state = layer.state
    dense_weight = state.CB.float() * (state.SCB.float() / 127).unsqueeze(1)
    x = torch.randn(3, 7, 48)
    upstream = torch.randn(3, 7, 40)
    outs, grads = [], []
    for run in ("skewtune", "bitsandbytes", "dense"):
        a = x.clone().requires_grad_(True)
        if run == "skewtune":
            y = layer(a)
        elif run == "bitsandbytes":
            y = bnb_functions.MatMul8bitFp.apply(a, state.CB, None, layer.bias, state)
        else:
            y = torch.nn.functional.linear(a, dense_weight, layer.bias)
        (y * upstream).sum().backward()
        outs.append(y.detach())
        grads.append(a.grad)
    assert torch.equal(outs[0], outs[1]) and torch.allclose(outs[0], outs[2], atol=1e-6)
    assert torch.equal(grads[0], grads[1]) and torch.allclose(grads[0], grads[2], atol=1e-6)
    layer.eval()  # stock bitsandbytes switches to MatMul8bitLt (fp16 activations) here
    with torch.inference_mode():
        assert torch.equal(layer(x), outs[0])


def test_cpu_int8_matmul_keeps_no_activation_for_the_backward() -> None:
    """A frozen int8 weight needs no gradient, so the layer's input must not be kept alive until the backward
    (bitsandbytes' ``MatMul8bitFp`` keeps it as ``ctx.A``); only the int8 weight and its row scale are saved."""
    import weakref

    from skewtune.backbones.bnb_compat import patch_cpu_int8_matmul

    patch_cpu_int8_matmul()
    layer = _int8_linear()
    leaf = torch.randn(5, 48, requires_grad=True)
    hidden = leaf * 2.0  # a non-leaf input, as inside a network
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = layer(hidden)
    probe = weakref.ref(hidden)
    del hidden
    assert probe() is None, "the layer's input is still referenced by the graph"
    assert [t.dtype for t in saved] == [torch.int8, torch.float32] and saved[1].shape == (40, 1)
    y.sum().backward()
    assert torch.allclose(leaf.grad, 2.0 * layer.state.CB.float().mul(layer.state.SCB.unsqueeze(1) / 127).sum(0)
                          .expand(5, 48), atol=1e-5)


def test_cpu_int8_matmul_bias_grad_autocast_and_rescaled_weights() -> None:
    """A trainable bias gets its gradient; under bf16 autocast the GEMM runs in bf16 and the input gradient keeps the
    input's dtype; a row scale changed in place (as a merge does) is picked up, not served from the cache."""
    from skewtune.backbones.bnb_compat import patch_cpu_int8_matmul

    patch_cpu_int8_matmul()
    layer = _int8_linear()
    layer.bias.requires_grad_(True)
    x = torch.randn(4, 48, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert torch.allclose(layer.bias.grad, torch.full((40,), 4.0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = layer(x)
    assert z.dtype == torch.bfloat16 and torch.allclose(z.float(), y, atol=0.05, rtol=0.02)
    x.grad = None
    z.float().sum().backward()
    assert x.grad.dtype == torch.float32
    with torch.no_grad():
        before = layer(x) - layer.bias
        layer.state.SCB.mul_(2.0)
        assert torch.allclose(layer(x) - layer.bias, 2.0 * before, atol=1e-5)


def test_dora_on_8bit_keeps_training(tiny_bert: Path) -> None:
    """``keep_int8_scales``: peft's CPU dequantize (DoRA, every forward) no longer loses the int8 row scales."""
    from skewtune.adapters import AdapterSettings, build_adapter

    model = build_adapter(load_backbone(resolve_backbone(str(tiny_bert)), num_labels=2, quant="8bit"), "dora",
                          AdapterSettings(target_modules="attention", modules_to_save=["classifier"]))
    ids = torch.randint(1000, 5000, (4, 8), generator=torch.Generator().manual_seed(0))
    for _ in range(3):  # failed on the second step before
        model(input_ids=ids, labels=torch.tensor([0, 1, 0, 1])).loss.backward()


def _check_error(capsys: pytest.CaptureFixture[str], argv: list[str], expect: list[str], out: Path) -> str:
    assert cli_main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err and err[-1].startswith("error: ") and "(fix: " in err[-1] and "Traceback" not in "\n".join(err)
    for text in expect:
        assert text.lower() in err[-1].lower(), err[-1]
    assert not out.exists(), "nothing may be written on bad input"
    return err[-1]


def test_4bit_where_bitsandbytes_cannot_run_it(capsys, monkeypatch, tiny_bert: Path, toy_csv: Path,
                                               tmp_path: Path) -> None:
    import bitsandbytes.functional as bnbf

    def broken(*args, **kwargs):
        raise RuntimeError("no 4-bit kernel for this device\nsecond line")

    monkeypatch.setattr(bnbf, "quantize_4bit", broken)
    q._probe.cache_clear()
    try:
        out = tmp_path / "out"
        line = _check_error(capsys, ["train", *tiny_args(tiny_bert, toy_csv, out, "--quant", "4bit")],
                            ["--quant 4bit cannot run on cpu", "no 4-bit kernel"], out)
        assert "second line" not in line
    finally:
        q._probe.cache_clear()


@pytest.mark.parametrize("flags,expect", [
    (["--quant", "none", "--quantize_embeddings", "true"], ["needs a quantized backbone"]),
    (["--quant", "2bit"], ["unknown quant mode '2bit'", "8bit", "4bit", "none"]),
    (["--adapter", "loha"], ["unknown adapter 'loha'", "lora", "dora", "rslora", "prefix", "ia3", "prompt"]),
    (["--quantize_embeddings", "maybe"], []),
])
def test_bad_quant_and_adapter_flags(capsys, tiny_bert: Path, toy_csv: Path, tmp_path: Path, flags, expect) -> None:
    out = tmp_path / "out"
    if not expect:  # argparse rejects a non-boolean value itself (exit 2, usage line)
        with pytest.raises(SystemExit) as exc:
            cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, *flags)])
        assert exc.value.code == 2 and not out.exists()
        return
    _check_error(capsys, ["train", *tiny_args(tiny_bert, toy_csv, out, *flags)], expect, out)


def test_cpu_int8_matmul_trains_after_scoring_in_inference_mode() -> None:
    """Scoring first (the row scale is cached under ``torch.inference_mode``, as an inference tensor), then a
    training pass: the cached scale is rebuilt instead of autograd refusing to save an inference tensor."""
    from skewtune.backbones.bnb_compat import patch_cpu_int8_matmul

    patch_cpu_int8_matmul()
    layer = _int8_linear()
    layer.state.SCB = layer.state.SCB.clone()  # new weights loaded (as from a checkpoint): the cached scale is stale
    x = torch.randn(4, 48)
    with torch.inference_mode():
        scored = layer(x)
    a = x.clone().requires_grad_(True)
    y = layer(a)
    y.sum().backward()
    assert torch.equal(y.detach(), scored) and a.grad is not None and torch.isfinite(a.grad).all()
