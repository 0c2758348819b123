"""Prunescope: ``python main.py`` opens the studio; ``python main.py COMMAND ...`` runs headless (see --help)."""

from __future__ import annotations

import sys

HEADLESS = {"inspect", "compress", "train-zoo", "zoo"}


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

    return run_studio(args.model, args.data, arch=args.arch, input_shape=shape, trust=args.trust)


if __name__ == "__main__":
    sys.exit(main())
