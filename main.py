"""Prunescope: ``python main.py`` opens the studio; ``python main.py COMMAND ...`` runs headless (see --help)."""

from __future__ import annotations

import sys

HEADLESS = {"inspect", "compress", "sensitivity", "sweep", "train-zoo", "zoo"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and (argv[0] in HEADLESS or argv[0] in ("-h", "--help", "--version")):
        from core.cli import main as cli_main

        return cli_main(argv)
    from core.cli import build_parser

    args = build_parser().parse_args(["studio", *argv] if not argv or argv[0] != "studio" else argv)
    from core.io import parse_input_shape
    from core.errors import PrunescopeError

    try:
        shape = parse_input_shape(args.input_shape) if args.input_shape else None
    except PrunescopeError as exc:
        print(f"prunescope: error: {exc}", file=sys.stderr)
        return 2
    from gui.app import run_studio

    return run_studio(args.model, args.data, arch=args.arch, input_shape=shape, trust=args.trust, source=args.source,
                      inputs=args.inputs, sample_rate=args.sample_rate, chunk=args.chunk, task=args.task,
                      pairs=args.pairs)


def _cancel(signum=None, frame=None) -> None:
    """Ctrl+C at the command line, at any moment: remove the temporary files being written, say
    "cancelled" in one line and exit with status 130.

    It exits at once (``os._exit``) rather than raising KeyboardInterrupt, which a library can swallow
    halfway through an import (leaving numpy half-imported and the run going on). Nothing is lost: every
    output is written to a temporary and renamed into place, and the model file is never written. Renames
    that must happen together (a compressed file and its report) are waited for.
    """
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fileio = sys.modules.get("core.fileio")  # not imported yet: nothing is being written
    if fileio is not None:
        if fileio.defer_while_writing(_cancel):
            return
        fileio.remove_live_temps()
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - exiting anyway
        pass
    os.write(2, b"prunescope: cancelled\n")
    os._exit(130)


if __name__ == "__main__":
    if sys.argv[1:2] and sys.argv[1] in HEADLESS:
        import signal

        signal.signal(signal.SIGINT, _cancel)
    try:
        status = main()
    except KeyboardInterrupt:  # the studio, or a Ctrl+C before the handler was installed
        sys.stderr.write("prunescope: cancelled\n")
        status = 130
    sys.exit(status)
