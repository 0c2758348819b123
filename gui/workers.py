"""Background work on Qt's thread pool: a core task generator runs in a superqt GeneratorWorker.

The worker checks for cancel between the generator's yields. On cancel the generator is closed, on the
worker's own thread, so the core task's ``finally`` blocks (hook removal, restoring state) run there before
anything else touches the model.
Exceptions are wrapped so that superqt never mistakes a torch ``RuntimeError`` for a return value.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Generator

from PySide6.QtCore import QObject, QTimer, Signal
from superqt.utils import GeneratorWorker, create_worker

from core.progress import Partial


class TaskFailed(Exception):
    """Carries the exception a task raised, across the thread boundary."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _ClosingWorker(GeneratorWorker):
    """A GeneratorWorker that closes its generator on its own thread and leaves ``warnings`` alone.

    A task's context managers hold thread-local state (``torch.inference_mode``, hooks): they must exit on
    the thread they entered, or that state leaks into whatever the thread pool runs next (and closing the
    generator from another thread would carry it there instead). superqt's ``run`` wraps the work in
    ``warnings.catch_warnings()`` and points the process-wide ``warnings.showwarning`` at this worker's
    signal; that module state is shared by every thread, so overlapping workers restore each other's (and
    the UI thread's) settings out of order and can leave it pointing at a deleted worker. This ``run`` does
    what superqt's does, without that.
    """

    def run(self) -> None:
        self.started.emit()
        self._running = True
        try:
            try:
                result = super().work()
            finally:
                self._gen.close()
            if isinstance(result, Exception):
                raise result
            if not self.abort_requested:
                self.returned.emit(result)
        except Exception as exc:
            self.errored.emit(exc)
        self._running = False
        self.finished.emit()
        self._finished.emit(self)


UI_TURN_TIMEOUT_S = 0.5
"""The longest a task waits for the UI thread to finish drawing (see :class:`UiTurn`)."""


class UiTurn:
    """A handshake that keeps a task off the interpreter while the UI thread draws what the task caused.

    A task starts because of UI work (a variant landing, a click) and hands the UI partial results; the UI
    thread then updates tables and repaints plots, and pyqtgraph paints in Python, so a task running
    meanwhile (its Python between compiled calls) makes every step of that drawing wait for the
    interpreter lock. So before it starts, and after each partial result, the task waits until the UI
    thread has come back to its event loop and run a short timer: by then the handlers have run and the
    repaint they asked for is done. The wait ends after :data:`UI_TURN_TIMEOUT_S` whatever happens.
    """

    def __init__(self) -> None:
        self._done = threading.Event()

    def give(self) -> None:
        """On the UI thread: the UI's turn ends two event-loop passes after this (a 1 ms timer that starts
        another): a handler may defer part of its drawing to a 1 ms timer of its own (the layers page
        does), and the repaint that asks for is done only in the pass after it."""
        QTimer.singleShot(1, lambda: QTimer.singleShot(1, self._done.set))

    def take(self) -> None:
        """On the task's thread, before handing the UI something: the UI's turn starts."""
        self._done.clear()

    def wait(self) -> None:
        """On the task's thread: until the UI's turn has ended."""
        self._done.wait(UI_TURN_TIMEOUT_S)


BACKGROUND_NICE = 10
"""Scheduling priority (Unix nice) of the threads that run tasks. With the engine on every core (torch's
threads, the statistics pool), the UI thread competes for a core; at nice 10 a task's threads yield to it
at once, and take the whole machine whenever the UI is idle."""


def run_in_background_priority() -> None:
    """Lower the calling thread's scheduling priority to :data:`BACKGROUND_NICE` (Linux: nice is per
    thread, and the threads it starts afterwards, torch's and the statistics pool's, inherit it).
    Elsewhere, or where the system refuses, nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < BACKGROUND_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
    except OSError:
        pass


class _EnginePreparation(threading.Thread):
    """Loads what the engine would otherwise load on first use, in the middle of a task: imports and numba
    kernels hold the interpreter lock for up to a tenth of a second at a time, which the UI thread would
    wait out. ``ready`` is set once the kernels and the compressing modules are loaded (the studio shows
    its window then); torch._dynamo (which torch.optim imports: 1.4 s) follows while the window is up,
    and tasks start once all of it is done (:func:`_paced`)."""

    def __init__(self) -> None:
        super().__init__(name="prepare-engine", daemon=True)
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            import core.pipeline.apply  # noqa: F401 - torch.ao and Torch-Pruning: 70 ms at the first Apply otherwise
            from core.format import huffman
            from core.analysis import stats

            stats.warm_up()  # 0.5 s from numba's cache: at the first statistics pass otherwise
            huffman.warm_up()
        finally:
            self.ready.set()
        import torch._dynamo  # noqa: F401 - at the first fine-tune otherwise (torch.optim imports it)

        # Its 100,000-odd objects live as long as the process: out of the collections the UI thread runs
        # (gui.app.collect_garbage_on_ui_thread). Freezing collects nothing, so it is safe on this thread.
        gc.freeze()


_preparation: _EnginePreparation | None = None


def prepare_engine() -> _EnginePreparation:
    """Start preparing the engine in the background, once per process (see :class:`_EnginePreparation`)."""
    global _preparation
    if _preparation is None:
        _preparation = _EnginePreparation()
        _preparation.start()
    return _preparation


def _paced(task: Generator, turn: UiTurn) -> Generator:
    try:
        run_in_background_priority()
        prepare_engine().join()  # once per process: the first task waits for the imports (see above)
        turn.wait()  # a task is started by UI work (a result landing): let it draw first
        item = next(task)
        while True:
            if isinstance(item, Partial):
                turn.take()
            yield item
            if isinstance(item, Partial):
                turn.wait()
            item = next(task)
    except StopIteration as stop:
        return stop.value
    finally:
        task.close()  # on cancel too: the task's own cleanup runs on this (the worker's) thread


def _guarded(task: Generator, turn: UiTurn) -> Generator:
    try:
        result = yield from _paced(task, turn)
    except GeneratorExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - everything must reach the UI as a message
        raise TaskFailed(exc) from exc
    return result


class TaskRunner(QObject):
    """Runs one task at a time. Starting a task while one runs cancels the running one and starts the new
    one only once the old has really stopped (two tasks never touch a model at once); signals of a
    superseded task are dropped."""

    sig_started = Signal(str)
    """A task with this title started."""
    sig_progress = Signal(object)
    """A :class:`core.progress.Progress` from the running task."""
    sig_partial = Signal(object)
    """A :class:`core.progress.Partial` result from the running task."""
    sig_finished = Signal(str, object)
    """The task with this title returned this value."""
    sig_failed = Signal(str, object)
    """The task with this title raised this exception."""
    sig_cancelled = Signal(str)
    """The task with this title was cancelled by the user."""
    sig_idle = Signal()
    """No task is running or waiting any more."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._worker: GeneratorWorker | None = None
        self._pending: tuple | None = None
        self._generation = 0
        self._retired: deque[GeneratorWorker] = deque(maxlen=64)

    @property
    def busy(self) -> bool:
        return self._worker is not None or self._pending is not None

    def start(self, title: str, make_task: Callable[[], Generator],
              on_done: Callable[[object], None] | None = None) -> None:
        """Run ``make_task()`` (a core task generator) in the background, after any running task stops;
        ``on_done(result)`` runs on the UI thread if it finishes without being superseded."""
        self._generation += 1  # whatever runs now is superseded: its results are stale
        if self._worker is not None:
            self._pending = (title, make_task, on_done)
            self._worker.quit()
            return
        self._launch(title, make_task, on_done)

    def cancel(self) -> None:
        """Ask the running task to stop at its next yield; a waiting task is dropped."""
        self._pending = None
        if self._worker is not None:
            self._worker.quit()

    def _launch(self, title: str, make_task: Callable[[], Generator], on_done=None) -> None:
        turn = UiTurn()
        turn.give()
        task = _guarded(make_task(), turn)
        worker = create_worker(lambda: (yield from task), _start_thread=False, _ignore_errors=True,
                               _worker_class=_ClosingWorker)
        relay = _Relay(self, worker, task, title, self._generation, turn, on_done)
        worker.yielded.connect(relay.on_yield)
        worker.returned.connect(relay.on_return)
        worker.errored.connect(relay.on_error)
        worker.aborted.connect(relay.on_abort)
        worker.finished.connect(relay.on_finished)
        self._worker = worker
        self.sig_started.emit(title)
        worker.start()

    def _worker_done(self, worker: GeneratorWorker) -> None:
        # Keep finished workers referenced from this (the UI) thread for a while: their pool thread may still
        # be returning from run(), and if it dropped the last reference there, the worker's signal QObject
        # would be destroyed on that thread (Qt then warns about timers and can crash).
        self._retired.append(worker)
        if self._worker is worker:
            self._worker = None
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._launch(*pending)
        elif self._worker is None:
            self.sig_idle.emit()


class _Relay(QObject):
    """Forwards one worker's signals to its runner. A child of the runner, so that Qt drops the worker's
    late signals once the runner is gone (a closure would outlive it and emit into a deleted object)."""

    def __init__(self, runner: TaskRunner, worker: GeneratorWorker, task: Generator, title: str,
                 generation: int, turn: UiTurn, on_done=None) -> None:
        super().__init__(runner)
        self.runner, self.worker, self.task, self.title, self.generation = runner, worker, task, title, generation
        self.turn, self.on_done = turn, on_done

    def _current(self) -> bool:
        return self.generation == self.runner._generation

    def on_yield(self, item) -> None:
        if self._current():
            (self.runner.sig_partial if isinstance(item, Partial) else self.runner.sig_progress).emit(item)
        if isinstance(item, Partial):
            self.turn.give()

    def on_return(self, value) -> None:
        if self._current():
            if self.on_done is not None:
                self.on_done(value)
            self.runner.sig_finished.emit(self.title, value)

    def on_error(self, exc) -> None:
        if self._current():
            self.runner.sig_failed.emit(self.title, exc.error if isinstance(exc, TaskFailed) else exc)

    def on_abort(self) -> None:  # the worker thread has already closed the task (see _ClosingWorker)
        if self._current():
            self.runner.sig_cancelled.emit(self.title)

    def on_finished(self) -> None:
        self.runner._worker_done(self.worker)
        self.deleteLater()
