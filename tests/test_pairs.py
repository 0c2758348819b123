"""The STS metric (``--pairs``): Spearman and Pearson correlation of pooled-embedding cosines with gold
scores, pooled as a sentence-transformers folder says, checked against scipy on cosines computed here."""

from __future__ import annotations

import json

import pytest
import torch

from core.eval.pairs import PairsError, Pooling, pairs_score, read_pairs, read_pooling
from core.io import LoadOptions, load_model
from core.progress import run
from tests.test_cli import prunescope

WORDS = "the quick brown fox jumps over lazy dog pruning removes weights that matter least".split()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.factories import write_hf_folder

    return write_hf_folder(tmp_path_factory.mktemp("hf") / "tiny-encoder", encoder=True)


def _sentence_transformer(folder, tmp_path, mode):
    """The encoder as a sentence-transformers folder: Transformer, Pooling (``mode``) and Normalize modules."""
    import shutil

    target = tmp_path / f"st-{mode}"
    shutil.copytree(folder, target)
    (target / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (target / "1_Pooling").mkdir()
    flags = {f"pooling_mode_{m}": False for m in ("mean_tokens", "cls_token", "max_tokens")}
    flags[f"pooling_mode_{mode}"] = True
    (target / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **flags}))
    return target


def _pairs_file(path, n=30):
    rows = ["sentence1\tsentence2\tscore"]
    for i in range(n):
        a = " ".join(WORDS[i % 7:i % 7 + 4])
        b = " ".join(WORDS[(i * 3) % 9:(i * 3) % 9 + 3 + i % 3])
        rows.append(f"{a}\t{b}\t{(i * 7) % 11 / 2:.1f}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _by_hand(model, tokenize, pairs, mode):
    with torch.inference_mode():
        def embed(sentences):
            batch = tokenize(sentences)
            states = model(**batch).last_hidden_state
            if mode == "cls_token":
                e = states[:, 0]
            else:
                m = batch["attention_mask"].unsqueeze(-1).float()
                e = (states * m).sum(1) / m.sum(1)
            return torch.nn.functional.normalize(e, dim=1)
        return torch.nn.functional.cosine_similarity(embed([p[0] for p in pairs]), embed([p[1] for p in pairs])).numpy()


@pytest.mark.parametrize("mode", ["mean_tokens", "cls_token"])
def test_the_pairs_metric_is_scipys_correlation_of_the_cosines_pooled_as_the_folder_says(encoder, tmp_path, mode):
    from scipy.stats import pearsonr, spearmanr

    folder = _sentence_transformer(encoder, tmp_path, mode)
    loaded = load_model(folder, LoadOptions(pairs=str(_pairs_file(tmp_path / "pairs.tsv"))))
    pooling = loaded.meta["pooling"]
    assert pooling.mode == {"mean_tokens": "mean", "cls_token": "cls"}[mode] and pooling.normalize
    pairs = loaded.meta["pairs"]
    assert len(pairs) == 30  # the header line is not a pair
    score = run(pairs_score(loaded.module, loaded.tokenize, pairs, pooling))
    cosines, gold = _by_hand(loaded.module, loaded.tokenize, pairs, mode), [p[2] for p in pairs]
    assert score.count == 30
    assert score.spearman == pytest.approx(spearmanr(cosines, gold).statistic, abs=1e-6)
    assert score.pearson == pytest.approx(pearsonr(cosines, gold).statistic, abs=1e-6)
    assert any(n.startswith(f"pairs: 30 sentence pairs from pairs.tsv, embedded by {pooling.mode} pooling then "
                            "L2-normalised") for n in loaded.meta["notes"])


def test_without_sentence_transformers_files_pooling_is_the_mean_over_the_mask(encoder):
    assert read_pooling(encoder) == Pooling()


def test_compress_reports_the_pairs_metric_before_and_after(encoder, tmp_path):
    pairs = _pairs_file(tmp_path / "pairs.tsv")
    (tmp_path / "lines.txt").write_text("\n".join(" ".join(WORDS[i:i + 5]) for i in range(10)), encoding="utf-8")
    (tmp_path / "recipe.yaml").write_text("steps: [{kind: prune_magnitude, sparsity: 0.6}, {kind: encode}]")
    result = prunescope("compress", str(encoder), "--inputs", str(tmp_path / "lines.txt"), "--pairs", str(pairs),
                        "--recipe", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "sentence pairs (STS) before: Spearman" in result.stdout
    assert "sentence pairs (STS) after: Spearman" in result.stdout
    metrics = json.loads((tmp_path / "out" / "report.json").read_text())["metrics"]
    assert metrics["before"]["pairs"]["count"] == metrics["after"]["pairs"]["count"] == 30
    assert metrics["before"]["pairs"]["spearman"] != metrics["after"]["pairs"]["spearman"]
    assert metrics["after"]["fidelity"]["kind"] == "embed" and metrics["after"]["fidelity"]["top1_agreement"] is None


@pytest.mark.parametrize("text, message", [
    ("a\tb\t1\nc\td\n", "line 2: 2 tab-separated fields"),
    ("a\tb\t1\nc\td\tvery\n", "line 2: the gold score 'very' is not a number"),
    ("a\tb\t1\nc\td\t2\n", "2 pairs; a correlation needs at least 3"),
    ("a\tb\t1\nc\td\t1\ne\tf\t1\n", "every gold score is the same"),
    ("a\tb\tnan\nc\td\t1\ne\tf\t2\n", "line 1: the gold score is not a finite number"),
])
def test_a_bad_pairs_file_gets_one_line_naming_where(tmp_path, text, message):
    (tmp_path / "p.tsv").write_text(text, encoding="utf-8")
    with pytest.raises(PairsError, match=message):
        read_pairs(tmp_path / "p.tsv")


def test_pairs_for_a_model_without_a_tokenizer_are_refused(model_files, tmp_path):
    _pairs_file(tmp_path / "pairs.tsv")
    with pytest.raises(PairsError, match="scored by a model with a tokenizer"):
        load_model(model_files["state_dict"], LoadOptions(arch="lenet300", pairs=str(tmp_path / "pairs.tsv")))
