"""Command line: ``python -m nbflow demo`` runs the quickstart flow in the terminal."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``python -m nbflow <command>``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m nbflow demo [--pace X] [--resume last|RUN_ID]")
        return 0
    command, rest = args[0], args[1:]
    if command == "demo":
        from .demo import main as demo

        return demo(rest)
    print(f"python -m nbflow: unknown command {command!r}; try 'demo'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
