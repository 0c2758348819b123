"""Hugging Face model folders (written by ``save_pretrained``), an optional extra: ``pip install -e .[hf]``.

Nothing is fetched from a hub: every call passes ``local_files_only=True`` and never ``trust_remote_code``.
Text models get their probe inputs from the folder's own tokenizer; vision models from their config.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.io.base import LoadedModel, LoadFn, LoadOptions, ModelLoadError
from core.eval.pairs import read_pooling
from core.io.files import path_bytes

PROBE_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Pruning removes weights that matter least.",
    "Quantization stores each weight in fewer bits.",
    "A smaller model on disk is what users asked for.",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")


def load_hf_folder(folder: Path, options: LoadOptions) -> LoadedModel:
    """Load the model class the folder's config names (or AutoModel), with probe inputs for it."""
    try:
        import transformers
    except ImportError:
        raise ModelLoadError(f"{folder.name} is a Hugging Face model folder; reading it needs the optional "
                             "transformers package: pip install -e '.[hf]'") from None
    transformers.utils.logging.disable_progress_bar()
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        names = [n for n in (config.architectures or []) if hasattr(transformers, n)]
        model_class = getattr(transformers, names[0]) if names else transformers.AutoModel
        model = model_class.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{folder.name}: cannot load Hugging Face model ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    model.eval()
    probes, shape, tokenize = _probe_inputs(folder, model, config, options, transformers)
    labels = getattr(config, "id2label", None) or {}
    classes = tuple(labels[i] for i in sorted(labels)) if labels and "ForSequenceClassification" in \
        type(model).__name__ else None
    return LoadedModel(model, folder.name, str(folder), "huggingface", input_shape=shape, classes=classes,
                       probe_inputs=probes, file_bytes=path_bytes(folder), tokenize=tokenize,
                       meta={"architecture": type(model).__name__, "model_type": config.model_type,
                             "pooling": read_pooling(folder),
                             **({"task": "lm"} if _is_causal_lm(model, config) else {})})


def _is_causal_lm(model, config) -> bool:
    """A model that predicts each next token (its logits are a language model's, not per-token classes)."""
    name = type(model).__name__
    return name.endswith(("ForCausalLM", "LMHeadModel")) or (bool(getattr(config, "is_decoder", False))
                                                               and "ForTokenClassification" not in name)


def _probe_inputs(folder: Path, model, config, options: LoadOptions, transformers):
    generator = torch.Generator().manual_seed(0)
    main_input = getattr(model, "main_input_name", "input_ids")
    if main_input == "pixel_values":
        size = getattr(config, "image_size", 224)
        shape = options.input_shape or (1, getattr(config, "num_channels", 3), size, size)
        return [{"pixel_values": torch.rand(shape, generator=generator)}], shape, None
    if any((folder / name).exists() for name in TOKENIZER_FILES):
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)

            positions = int(getattr(config, "max_position_embeddings", 0) or 0) or None

            def tokenize(lines: list[str], max_length: int = 64) -> dict[str, torch.Tensor]:
                if positions is not None:
                    max_length = min(max_length, positions)  # never past the model's position table
                batch = tokenizer(list(lines), padding=True, truncation=True, max_length=max_length,
                                  return_tensors="pt")
                return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

            def stream(text: str) -> torch.Tensor:  # a whole text as one token stream (sliding-window perplexity)
                tokenizer.model_max_length = 1 << 30  # no warning: the windows keep within the positions
                return torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)

            tokenize.stream, tokenize.positions = stream, positions
            inputs = tokenize(PROBE_SENTENCES)
            return [inputs], tuple(inputs["input_ids"].shape), tokenize
        except Exception as exc:  # a broken tokenizer should not stop inspection
            raise ModelLoadError(f"{folder.name}: the folder's tokenizer failed ({exc})") from exc
    shape = options.input_shape or (len(PROBE_SENTENCES), 16)
    vocab = int(getattr(config, "vocab_size", 1000))
    return [{"input_ids": torch.randint(0, vocab, shape, generator=generator)}], shape, None


class HuggingFaceLoader:
    format = "huggingface"
    describes = "Hugging Face folder (save_pretrained; needs the [hf] extra)"

    def can_load(self, spec: str) -> bool:
        path = Path(spec)
        return path.is_dir() and (path / "config.json").is_file()

    def load(self, spec: str, options: LoadOptions, load: LoadFn) -> LoadedModel:
        return load_hf_folder(Path(spec), options)
