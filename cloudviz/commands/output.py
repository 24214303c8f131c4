"""What every command prints: the text for people, or with ``--json`` the document for scripts."""

from __future__ import annotations

import argparse
import json


def emit(args: argparse.Namespace, document: object, text: str) -> None:
    print(json.dumps(document, indent=2, default=str) if args.json else text)


def print_flushed(text: str) -> None:
    print(text, flush=True)
