"""Rendering helpers shared by command modules: JSON, tables and progress go through here."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def warn(message: str) -> None:
    print(f"conary: warning: {message}", file=sys.stderr)


def notice(message: str) -> None:
    print(f"conary: {message}", file=sys.stderr)
