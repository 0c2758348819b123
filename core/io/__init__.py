"""Reading models: one loader per format, the trust policy for files that run code, and model export.

``base`` holds the shared types; each format has its own module (``zoo``, ``compressed``, ``torchscript``,
``exported``, ``onnx``, ``state_dict``, ``safetensors_weights``, ``hf``, ``pickled``), importing only ``base``
and the helpers in ``files``, ``architectures`` and ``program``; ``loading`` tries them in turn. ``export`` writes a model as a state_dict, TorchScript or
ONNX file.
"""

from core.io.base import LoadedModel, LoadOptions, ModelLoadError, NeedsArchitecture, UntrustedPickleError
from core.io.loading import LOADERS, load_model, parse_input_shape

__all__ = ["LOADERS", "LoadOptions", "LoadedModel", "ModelLoadError", "NeedsArchitecture", "UntrustedPickleError",
           "load_model", "parse_input_shape"]
