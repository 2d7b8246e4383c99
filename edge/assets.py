"""Where the shared model, clips and plate photos live (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def assets_dir() -> Path:
    """`$EDGE_ASSETS`, else `../shared/assets` beside the checkout."""
    env = os.environ.get("EDGE_ASSETS")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "assets").resolve()


def asset(*parts: str) -> Path:
    return assets_dir().joinpath(*parts)
