"""The fidelity metric for each kind of output: a classifier's top-1 agreement and KL, a causal language
model's perplexity and KL per token, each named element of a tuple or dict output, and ``--task``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from core.eval.fidelity import TASKS, fidelity
from core.io import LoadOptions, load_model
from core.progress import run
from tests.test_cli import prunescope

WORDS = "the quick brown fox jumps over lazy dog pruning removes weights that matter least".split()


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.factories import write_hf_folder

    return write_hf_folder(tmp_path_factory.mktemp("hf") / "tiny-lm", causal=True)


def _lines(path, n=40):
    path.write_text("\n".join(" ".join(WORDS[i % 9:i % 9 + 3 + i % 5]) for i in range(n)) + "\n", encoding="utf-8")
    return path


def _pruned(module: nn.Module, amount: float = 0.5) -> nn.Module:
    import copy

    pruned = copy.deepcopy(module)
    with torch.no_grad():
        for m in pruned.modules():
            if isinstance(m, nn.Linear):
                w = m.weight
                w[w.abs() < w.abs().flatten().kthvalue(int(amount * w.numel())).values] = 0
    return pruned


def test_a_causal_lm_is_measured_by_perplexity_on_its_own_next_tokens_and_kl(tiny_lm, tmp_path):
    loaded = load_model(tiny_lm, LoadOptions(inputs=str(_lines(tmp_path / "lines.txt"))))
    assert loaded.meta["task"] == "lm"
    same = run(fidelity(loaded.module, loaded.module, loaded.probe_inputs, loaded.meta["task"]))
    assert same.kind == "lm" and same.top1_agreement is None and same.kl == pytest.approx(0, abs=1e-6)
    assert same.perplexity == pytest.approx(same.reference_perplexity)
    nll = tokens = 0.0  # Hugging Face's own shifted loss, padding left out: the same perplexity
    with torch.inference_mode():
        for batch in loaded.probe_inputs:
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            n = int((labels[:, 1:] != -100).sum())
            nll += float(loaded.module(**batch, labels=labels).loss) * n
            tokens += n
    assert same.perplexity == pytest.approx(math.exp(nll / tokens), rel=1e-4)

    worse = run(fidelity(_pruned(loaded.module), loaded.module, loaded.probe_inputs, "lm"))
    assert worse.kl > 1e-4 and worse.perplexity != pytest.approx(worse.reference_perplexity)
    assert worse.reference_perplexity == pytest.approx(same.perplexity)


def test_compressing_a_causal_lm_reports_perplexity_not_top1(tiny_lm, tmp_path):
    lines = _lines(tmp_path / "lines.txt")
    (tmp_path / "recipe.yaml").write_text("steps: [{kind: prune_magnitude, sparsity: 0.5}, {kind: encode}]")
    result = prunescope("compress", str(tiny_lm), "--inputs", str(lines), "--recipe", str(tmp_path / "recipe.yaml"),
                        "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "fidelity after: perplexity" in result.stdout and "top-1" not in result.stdout
    after = json.loads((tmp_path / "out" / "report.json").read_text())["metrics"]["after"]["fidelity"]
    assert after["kind"] == "lm" and after["perplexity"] > 1 and after["kl"] > 0


def test_a_classifiers_kl_is_the_mean_kl_of_its_softmax_from_the_references():
    from scipy.stats import entropy

    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(6, 5)).eval()
    model = _pruned(reference, 0.6)
    x = torch.randn(64, 6)
    result = run(fidelity(model, reference, [x[:40], x[40:]]))
    with torch.inference_mode():
        p, q = reference(x).softmax(-1).numpy(), model(x).softmax(-1).numpy()
    assert result.kind == "classify" and result.count == 64
    assert result.kl == pytest.approx(float(np.mean([entropy(p[i], q[i]) for i in range(64)])), rel=1e-4)
    assert result.top1_agreement == pytest.approx(float((p.argmax(1) == q.argmax(1)).mean()))


class TwoHeads(nn.Module):
    def __init__(self, as_dict: bool):
        super().__init__()
        self.as_dict = as_dict
        self.body = nn.Linear(6, 8)
        self.classes = nn.Linear(8, 4)
        self.score = nn.Linear(8, 1)

    def forward(self, x):
        h = torch.relu(self.body(x))
        if self.as_dict:
            return {"logits": self.classes(h), "features": h, "score": self.score(h).squeeze(-1)}
        return self.classes(h), h


@pytest.mark.parametrize("as_dict, names", [(False, ["output[0]", "output[1]"]),
                                            (True, ["logits", "features", "score"])])
def test_each_element_of_a_tuple_or_dict_output_is_compared_by_name(as_dict, names):
    torch.manual_seed(0)
    reference = TwoHeads(as_dict).eval()
    nn.init.zeros_(reference.classes.bias)
    model = TwoHeads(as_dict).eval()
    model.load_state_dict(reference.state_dict())
    with torch.no_grad():
        model.classes.weight.mul_(1.5)  # only the class scores change; the features stay the same
    result = run(fidelity(model, reference, [torch.randn(16, 6)]))
    assert list(result.elements) == names
    features = result.elements[names[1]]
    assert features[0] == pytest.approx(1.0) and features[1] == pytest.approx(0.0, abs=1e-7)
    assert result.elements[names[0]][1] == pytest.approx(0.5, rel=1e-5)  # ||1.5 W h - W h|| / ||W h||
    if as_dict:
        assert result.elements["score"][0] is None  # one number per example: no cosine


def test_the_task_overrides_the_detected_kind_and_the_cli_offers_every_task(model_files):
    loaded = load_model(model_files["state_dict"], LoadOptions(arch="lenet300", input_shape=(4, 1, 28, 28),
                                                               task="embed"))
    assert loaded.meta["task"] == "embed"
    result = run(fidelity(loaded.module, loaded.module, loaded.probe_inputs, loaded.meta["task"]))
    assert result.kind == "embed" and result.top1_agreement is None and result.cosine == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown task 'sort'"):
        run(fidelity(loaded.module, loaded.module, loaded.probe_inputs, "sort"))
    usage = prunescope("inspect", "--help").stdout
    assert "--task {" + ",".join(TASKS) + "}" in usage


def test_windows_score_every_token_once_and_refuse_a_bad_stride():
    from core.eval.lm import windows

    assert windows(10, 4, 2) == [(0, 4, 1), (2, 6, 2), (4, 8, 2), (6, 10, 2)]  # 3 + 2 + 2 + 2 = every token but the first
    assert windows(10, 4, 4) == [(0, 4, 1), (4, 8, 1), (8, 10, 1)]  # each window's first token has no context
    assert windows(3, 8, 4) == [(0, 3, 1)]
    with pytest.raises(ValueError, match="stride 5"):
        windows(10, 4, 5)


def test_sliding_window_perplexity_is_hugging_faces_recipe_before_and_after(tiny_lm, tmp_path):
    """Compared with the loop of Hugging Face's "Perplexity of fixed-length models", written out here."""
    from core.eval.lm import stride_perplexity

    lines = _lines(tmp_path / "lines.txt", 60)
    loaded = load_model(tiny_lm, LoadOptions(inputs=str(lines), stride=24))
    ids = loaded.meta["lm_stream"]
    assert len(ids) > 200  # the whole text as one stream, past the model's 64 positions
    result = run(stride_perplexity(loaded.module, ids, 64, 24))
    nll, count, previous = 0.0, 0, 0
    with torch.inference_mode():
        for begin in range(0, len(ids), 24):
            end = min(begin + 64, len(ids))
            chunk = ids[begin:end].unsqueeze(0)
            target = chunk.clone()
            target[:, :-(end - previous)] = -100
            valid = int((target[:, 1:] != -100).sum())
            nll += float(loaded.module(input_ids=chunk, labels=target).loss) * valid
            count, previous = count + valid, end
            if end == len(ids):
                break
    assert result.tokens == count == len(ids) - 1
    assert result.perplexity == pytest.approx(math.exp(nll / count), rel=1e-4)

    (tmp_path / "recipe.yaml").write_text("steps: [{kind: prune_magnitude, sparsity: 0.5}, {kind: encode}]")
    cli = prunescope("compress", str(tiny_lm), "--inputs", str(lines), "--stride", "24", "--recipe",
                     str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "out"), "--quiet")
    assert cli.returncode == 0, cli.stderr
    assert f"perplexity on the text before: {result.perplexity:.4g} over {count:,} tokens" in cli.stdout
    after = json.loads((tmp_path / "out" / "report.json").read_text())["metrics"]["after"]["perplexity"]
    assert after["tokens"] == count and after["window"] == 64 and after["stride"] == 24
    assert after["perplexity"] != pytest.approx(result.perplexity)
