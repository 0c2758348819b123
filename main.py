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
    from gui.app import run_studio

    return run_studio(args.model, args.data)


if __name__ == "__main__":
    sys.exit(main())
