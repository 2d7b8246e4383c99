"""Where the model, the demo clips and the plate photos live: shipped in the repository's
`assets/` (its `models` is the repository's `models/`), or a folder of the same layout named by
`$EDGE_ASSETS`."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def assets_dir() -> Path:
    """`$EDGE_ASSETS`, else the repository's `assets/`."""
    env = os.environ.get("EDGE_ASSETS")
    if env:
        return Path(env).expanduser().resolve()
    return REPO_ROOT / "assets"


def asset(*parts: str) -> Path:
    return assets_dir().joinpath(*parts)


def model_cache_dir() -> Path:
    """Where edge keeps the prepared copies of models it makes: the user's cache
    (`$XDG_CACHE_HOME/edge/models`, else `~/.cache/edge/models`), never the working directory."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "edge" / "models"
