"""The studio's session: the only place the GUI calls the engine.

It owns the loaded model, its data set and what has been measured about it, and runs every engine task
through one :class:`~gui.workers.TaskRunner`. Widgets listen to its signals and never touch the model. A
failed or cancelled load leaves the session exactly as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QObject, Signal

from core.eval.data import Dataset
from core.analysis.inspection import InspectOptions, inspect_model, open_for_inspection
from core.io import LoadedModel, LoadOptions
from core.progress import Partial
from core.recipe import Recipe
from core.pipeline.variants import compress_variant, original_variant
from gui.measurements import Measurements, Spectrum
from gui.recipe_draft import DRAFT_NAME, RecipeDraft
from gui.sensitivity_runs import SensitivityRuns
from gui.variant_store import VariantStore
from gui.workers import TaskRunner


class Session(QObject):
    sig_model_changed = Signal()
    """A new model (and data set) is loaded, or another variant became current; measurements were reset."""
    sig_measured = Signal(str)
    """A measurement arrived: ``inventory``, ``weights``, ``activations``, ``test``, ``latency``, ..."""
    sig_error = Signal(str, str)
    """A task failed: (title, one-line message). The session is unchanged."""
    sig_needs_trust = Signal(str, str)
    """A file needs unpickling: (spec, the risk in words). Call ``open_trusted(spec)`` to load it anyway."""
    sig_needs_options = Signal(dict, str, str)
    """Opening needs more than the path (an architecture): (the open's arguments, why, the field to fill)."""
    sig_opened = Signal(dict)
    """A model was opened from these arguments (spec, data_name, arch, input_shape): for Open Recent."""
    sig_notes = Signal(str, list)
    """Opening or a compression finished with notes (a wrapper's prefix taken off; a layer skipped, and why):
    (the model's or variant's name, the notes)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = TaskRunner(self)
        self.loaded: LoadedModel | None = None
        self.data: Dataset | None = None
        self.measurements = Measurements()
        self.inspect_options = InspectOptions()
        self.variants = VariantStore(self)
        self.draft = RecipeDraft(self)
        self.sensitivity = SensitivityRuns(self)  # sensitivity analyses of the current model, kept per request
        self.apply_on = "current"  # what Apply builds on: "current" (the current variant) or "original"
        self._open_args: dict = {}
        self._opening_args: dict | None = None  # the open in progress, until it succeeds
        self.opening = False
        self.generation = 0  # counts model changes: analyses of an earlier model are dropped
        self._analyses: dict = {}  # key -> (generation, title, make_task, on_done), waiting for a free runner
        self._analysing: tuple | None = None  # (key, title) of the analysis running now
        self._spectra: dict = {}  # (layer, method) -> Spectrum, for this generation
        self._logits: dict = {}  # (teacher, image index) -> logits (numpy), for this generation
        self._teachers: dict = {}  # teacher spec -> LoadedModel
        self._targets: tuple | None = None  # (low-rank targets, separable targets) of the current model
        self.runner.sig_partial.connect(self._on_partial)
        self.runner.sig_idle.connect(self._next_analysis)
        self.sig_model_changed.connect(self._forget_analyses)
        self.sig_model_changed.connect(self._fit_draft_to_model)
        self._trainable, self._epochs_before = True, 0  # whether the draft may train; its epochs before it could not
        self.runner.sig_failed.connect(self._on_failed)
        self.runner.sig_cancelled.connect(self._on_cancelled)
        self.variants.sig_current_changed.connect(self._on_current_variant)

    # ------------------------------------------------------------------------------------------ opening
    def open_model(self, spec: str, data_name: str | None = None, trust: bool = False,
                   arch: str | None = None, input_shape: tuple[int, ...] | None = None,
                   source: str | None = None, inputs: str | None = None, **own) -> None:
        """Load ``spec`` (zoo name, file or folder) and its data set in the background, then inspect it;
        ``source`` is the model a compressed file was made from, as the person names it; ``inputs`` a file of
        the person's own examples (:mod:`core.eval.inputs`), run on in place of the model's default data;
        ``own`` the rest of :class:`LoadOptions` for them (sample_rate, chunk, task, pairs)."""
        self.opening = True
        options = LoadOptions(trust=trust, arch=arch, input_shape=input_shape, source=source, inputs=inputs, **own)
        self._open_args = {"spec": spec, "data_name": data_name, "arch": arch, "input_shape": input_shape,
                           "source": source, "inputs": inputs, **own}
        self._opening_args = dict(self._open_args)
        fallback = self.data.spec if self.data is not None else None
        self.runner.start(f"Opening {spec}", lambda: open_for_inspection(spec, options, data_name, fallback),
                          self._opened)

    def open_trusted(self, spec: str) -> None:
        """Open ``spec`` again, now trusting it (the user confirmed), with the options it was opened with."""
        args = self._open_args if self._open_args.get("spec") == spec else {"spec": spec}
        self.open_model(**{**args, "trust": True})

    def use_dataset(self, data_name: str) -> None:
        """Re-open the current model with another data set (the model itself is not reloaded from disk)."""
        from core.eval.data import load_dataset

        self._reopen(f"Reading data set {data_name}", lambda loaded: (loaded, load_dataset(data_name)))

    def use_inputs(self, path: str, sample_rate: int | None = None, chunk: int | None = None) -> None:
        """Run the model as opened on the person's own examples (a file or folder, as ``--inputs`` takes)
        in place of its data set, read in the background; a file that cannot be read changes nothing."""
        from core.io.loading import with_inputs

        self._reopen(f"Reading inputs {Path(path).name}",
                     lambda loaded: (with_inputs(loaded, path, sample_rate, chunk), None))

    def use_pairs(self, path: str) -> None:
        """Score the model on sentence pairs with gold scores (``--pairs``, a .tsv), as well as what it is
        measured on now; a file that cannot be read changes nothing."""
        from core.io.loading import with_pairs

        data = self.data
        self._reopen(f"Reading sentence pairs {Path(path).name}", lambda loaded: (with_pairs(loaded, path), data))

    def use_task(self, task: str | None) -> None:
        """Measure fidelity for this output kind (``--task``; None: as detected)."""
        from core.io.loading import with_task

        data = self.data
        self._reopen(f"Measuring as {task or 'detected'}", lambda loaded: (with_task(loaded, task), data))

    def _reopen(self, title: str, change) -> None:
        """Re-open the model as opened (not reloaded from disk) with ``change(loaded) -> (loaded, data)``,
        run in the background and checked; one that fails changes nothing."""
        if self.loaded is None or self.opening:  # an open in progress decides the model first
            return
        loaded = self.variants.models.get(0, self.loaded)

        def task():
            from core.analysis.inspection import check_inputs

            mine, data = change(loaded)
            check_inputs(mine, data)
            return mine, data
            yield  # a generator, so it runs in the background like every task

        self.opening = True
        self.runner.start(title, task, self._opened)

    def _opened(self, value) -> None:
        self.opening = False
        self.loaded, self.data = value
        if self._opening_args:
            self.sig_opened.emit(self._opening_args)
            self._opening_args = None
        self.variants.clear()
        self.measurements = Measurements()
        self.sig_model_changed.emit()
        if self.loaded.meta.get("notes"):  # what loading changed (a wrapper's prefix taken off): said, not hidden
            self.sig_notes.emit(self.loaded.name, list(self.loaded.meta["notes"]))
        self.inspect()

    # ------------------------------------------------------------------------------------------ measuring
    def inspect(self) -> None:
        """Measure the current model: statistics, activations, accuracy, latency, bytes."""
        if self.loaded is None or self.opening:  # the model being opened is inspected when it arrives
            return
        loaded, data, options = self.loaded, self.data, self.inspect_options
        self.measurements = Measurements()
        known = self.variants.current.latency if self.variants.current is not None else None  # measured once
        self.runner.start(f"Inspecting {loaded.name}", lambda: inspect_model(loaded, data, options, None, known),
                          self._inspected)

    def _inspected(self, result) -> None:
        if not self.variants.variants and self.loaded is not None and self.loaded.streamed is None:  # variant 0
            loaded, data = self.loaded, self.data
            self.runner.start("Measuring the original", lambda: original_variant(loaded, data, result.latency),
                              lambda variant: self.variants.reset(variant, loaded))

    def cancel(self) -> None:
        self.opening = False
        self.runner.cancel()

    # ------------------------------------------------------------------------------------------ compressing
    def apply_base(self, recipe: Recipe | None = None):
        """The variant Apply builds on: the current one, or the original when ``apply_on`` says so (and
        always for a recipe that is a chain from the original)."""
        recipe = recipe or self.draft.to_recipe()
        if self.apply_on == "original" or recipe.base is not None:
            return self.variants.original
        return self.variants.current

    def apply(self, recipe: Recipe | None = None, on: int | None = None) -> bool:
        """Compress a variant with ``recipe`` (default: the draft) in the background: variant ``on``, or
        :meth:`apply_base`. Returns False, with a message and nothing changed, when the recipe cannot run
        on that model."""
        from core.pipeline.checks import check, weights_only_refusal
        from core.pipeline.variants import default_name

        if self.loaded is not None and self.loaded.streamed is not None:  # weights only: no layers to change
            self.sig_error.emit("Compressing needs an architecture", weights_only_refusal(self.loaded))
            return False
        if self.loaded is None or self.opening or not self.variants.variants:
            return False
        recipe = recipe or self.draft.to_recipe()
        parent = self.variants.get(on) if on is not None else self.apply_base(recipe)
        from core.recipe.schema import MAX_CHAIN

        if parent.recipe is not None and len(parent.recipe.chain()) >= MAX_CHAIN:
            self.sig_error.emit("Too long a chain of variants",
                                f"#{parent.id} was made by {MAX_CHAIN} runs one after another, as many as a recipe "
                                "records: build on the original, or save this variant and open its file.")
            return False
        if recipe.base is not None and not parent.is_original:
            self.sig_error.emit("This recipe starts from the original",
                                "It is a chain from the original model (it has a base): apply it on the original.")
            return False
        base, data = self.variants.models.get(parent.id, self.loaded), self.data
        try:
            check(recipe, base, data)
        except ValueError as exc:
            self.sig_error.emit("The recipe does not fit this model", str(exc))
            return False
        variant_id = self.variants.next_id()
        label = recipe.name if recipe.name and recipe.name != DRAFT_NAME else default_name(recipe)
        name = f"#{variant_id} {label}"
        chained_on = None if parent.is_original else parent
        self.runner.start(f"Compressing: {name}" + (f" (on #{parent.id})" if chained_on else " (on the original)"),
                          lambda: compress_variant(variant_id, name, recipe, base, data, chained_on),
                          lambda value: self._compressed(value, base))
        return True

    def remove_units(self, layer: str, units: list[int]) -> bool:
        """Remove these output units of one layer from the current model (structured pruning of exactly
        them) as a new variant; the engine keeps every coupled layer consistent."""
        from core.methods.coding import Encode
        from core.methods.structured import RemoveUnits

        current = self.variants.current
        if current is not None and current.codebooks:
            self.sig_error.emit("Units cannot be removed from a quantized variant",
                                "Structured pruning comes before quantization: make the original or a pruned, "
                                "unquantized variant current, remove the units there, then quantize.")
            return False
        noun = "unit" if len(units) == 1 else "units"
        recipe = Recipe(steps=(RemoveUnits(layer=layer, units=tuple(int(u) for u in units)),
                               Encode(small_tensors="float32")),  # the kept weights stay exactly as they were
                        name=f"remove {len(units)} {noun} of {layer}")
        return self.apply(recipe, on=current.id if current is not None else None)  # the units shown are its own

    def _compressed(self, value, base: LoadedModel) -> None:
        from core.report.reports import compression_to_dict

        from core.pipeline.apply import compressed_model

        variant, result = value
        model = compressed_model(result, base, variant.name)
        file_name = f"{base.name.split(' · ')[0]}-{variant.id}.psz"
        report = compression_to_dict(result, file_name)
        report["variant"] = {"id": variant.id, "name": variant.name, "parent": variant.parent}
        self.variants.add(variant, model, result.file_bytes, report)
        if result.notes:
            self.sig_notes.emit(variant.name, list(result.notes))

    def make_current(self, variant_id: int) -> None:
        self.variants.set_current(variant_id)

    def _on_current_variant(self, variant_id: int) -> None:
        model = self.variants.models.get(variant_id)
        if model is None or model is self.loaded:
            return
        self.loaded = model
        self.measurements = Measurements()
        self.sig_model_changed.emit()
        self.inspect()

    def save_variant(self, variant_id: int, folder: str | Path) -> Path:
        """Write a variant's compressed file and its report.json into ``folder``: both appear, or neither."""
        from core.fileio import write_together
        from core.report.reports import json_bytes

        report = self.variants.reports[variant_id]
        target = Path(folder) / report["file"]
        write_together({target: self.variants.files[variant_id].read_bytes(),
                        Path(folder) / f"{target.stem}.report.json": json_bytes(report)})
        self.variants.saved.add(variant_id)
        return target

    # ------------------------------------------------------------------------------------------ results
    def _on_partial(self, partial: Partial) -> None:
        if hasattr(self.measurements, partial.key):
            setattr(self.measurements, partial.key, partial.value)
            self.sig_measured.emit(partial.key)

    def _on_cancelled(self, title: str) -> None:
        self._drop_analysis(title)  # the user cancelled it: not run again
        self.opening = False
        self._opening_args = None

    def _on_failed(self, title: str, error: BaseException) -> None:
        from core.io import NeedsArchitecture, UntrustedPickleError
        from core.io.base import SourceModelNeeded

        self._drop_analysis(title)  # it failed: not run again
        self.opening = False
        self._opening_args = None
        if isinstance(error, UntrustedPickleError):
            self.sig_needs_trust.emit(self._open_args.get("spec", str(error.path)), str(error))
            return
        if isinstance(error, NeedsArchitecture):
            self.sig_needs_options.emit({**self._open_args, "arch": self._open_args.get("arch") or error.suggested},
                                        str(error), "arch")
            return
        if isinstance(error, SourceModelNeeded):  # a same-folder candidate is offered; pressing Open confirms it
            candidate = str(error.candidate) if error.candidate is not None else None
            self.sig_needs_options.emit({**self._open_args, "source": self._open_args.get("source") or candidate},
                                        str(error), "source")
            return
        message = str(error) or type(error).__name__
        self.sig_error.emit(title, message.splitlines()[0] if message else type(error).__name__)

    # ------------------------------------------------------------------------------------------ analyses
    def analyse(self, key, title: str, make_task, on_done) -> None:
        """Run a short, read-only analysis of the current model (a layer's spectrum, a teacher's logits) in
        the background once the runner is free: it never interrupts opening, inspecting or compressing, and
        one that such a task supersedes runs again afterwards. ``on_done(value)`` runs on the UI thread,
        unless another model became current meanwhile. A newer request with the same ``key`` replaces it."""
        self._analyses[key] = (self.generation, title, make_task, on_done)
        self._next_analysis()

    def _next_analysis(self) -> None:
        if self.runner.busy:
            return
        self._analysing = None
        while self._analyses:
            key, (generation, title, make_task, on_done) = next(iter(self._analyses.items()))
            if generation != self.generation:
                del self._analyses[key]
                continue
            self._analysing = (key, title)

            def done(value, key=key, entry=self._analyses[key]):
                if self._analyses.get(key) is entry:
                    del self._analyses[key]
                if entry[0] == self.generation:
                    entry[3](value)

            self.runner.start(title, make_task, done)
            return

    def forget_analysis(self, key) -> None:
        """Drop the analysis waiting under ``key`` (one running now stops with :meth:`cancel`)."""
        self._analyses.pop(key, None)

    def _drop_analysis(self, title: str) -> None:
        if self._analysing is not None and self._analysing[1] == title:
            self._analyses.pop(self._analysing[0], None)

    def _fit_draft_to_model(self) -> None:
        """Without a labelled data set, or on a compiled program, a step that trains is refused: the draft then
        does not train (its fine-tuning epochs go to 0), and trains as before once it may again."""
        from core.io.program import CompiledProgram

        trainable = self.data is not None and not isinstance(getattr(self.loaded, "module", None), CompiledProgram)
        if trainable == self._trainable:
            return
        self._trainable = trainable
        if not trainable and self.draft.finetune_epochs:
            self._epochs_before = self.draft.finetune_epochs
            self.draft.set(finetune_epochs=0)
        elif trainable and self._epochs_before:
            self.draft.set(finetune_epochs=self._epochs_before)
            self._epochs_before = 0

    def _forget_analyses(self) -> None:
        self.generation += 1
        self._spectra.clear()
        self._logits.clear()
        self._targets = None

    def architecture_targets(self) -> tuple[list[str], list[str]]:
        """The current model's layers a low-rank step can factorise, and the convolutions a separable step can
        replace (the engine's rules, read once per model)."""
        if self._targets is None:
            from gui.methods import arch_api as arch

            model = self.loaded.module if self.loaded is not None else None
            self._targets = ((arch.low_rank_targets(model), arch.separable_targets(model)) if model is not None
                             else ([], []))
        return self._targets

    def separable_counts(self, layer: str) -> tuple[int, int] | None:
        """(weights before, after) of making ``layer`` depthwise-separable; None for a layer that cannot be."""
        from gui.methods import arch_api as arch

        if layer not in self.architecture_targets()[1]:
            return None
        return arch.separable_params(self.loaded.module.get_submodule(layer))

    def spectrum(self, layer: str, method: str, on_done) -> None:
        """The singular-value spectrum of ``layer`` (a :class:`Spectrum`), computed in the background once per
        model, layer and method; ``on_done`` gets it (at once when it is known)."""
        key = (layer, method)
        if key in self._spectra:
            on_done(self._spectra[key])
            return
        module = self.loaded.module.get_submodule(layer)

        def task():
            from gui.methods import arch_api as arch

            values = arch.singular_values(module, method)
            power = values.to(torch.float64) ** 2
            energy = (torch.cumsum(power, 0) / max(float(power.sum()), 1e-300)).numpy()
            factorised = np.array([arch.factorised_params(module, r, method) for r in range(1, len(values) + 1)])
            return Spectrum(layer, method, values.numpy().copy(), energy, factorised, int(module.weight.numel()),
                            float(arch.break_even(module, method)))
            yield  # a generator, so it runs in the background like every task

        def keep(result: Spectrum) -> None:
            self._spectra[key] = result
            on_done(result)

        self.analyse(("spectrum",), f"Singular values of {layer}", task, keep)

    def teacher_logits(self, teacher: str, index: int, on_done) -> None:
        """The teacher's logits (numpy, one row per class) for test image ``index``, in the background, once
        per teacher and image; ``teacher`` is ``original`` (the model as loaded) or a model spec."""
        key = (teacher, index)
        if key in self._logits:
            on_done(self._logits[key])
            return
        if self.data is None or not self.variants.variants:
            return
        from core.analysis.outputs import load_teacher, logits_on_test_images

        data = self.data
        known = (self.variants.models.get(self.variants.original.id, self.loaded) if teacher == "original"
                 else self._teachers.get(teacher))

        def task():
            loaded = known if known is not None else (yield from load_teacher(teacher))
            logits = yield from logits_on_test_images(loaded, data, [index])
            return loaded, logits[0]

        def keep(value) -> None:
            loaded, logits = value
            if teacher != "original":
                self._teachers[teacher] = loaded
            self._logits[key] = logits
            on_done(logits)

        self.analyse(("logits", teacher), f"Teacher outputs for test image {index}", task, keep)
