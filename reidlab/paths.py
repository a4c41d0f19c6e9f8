"""Paths resolve from the repository root, never from the current working directory."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO_ROOT / "data"
RESULTS_ROOT = REPO_ROOT / "results"


def resolve(path: str | Path) -> Path:
    """An absolute path as given; a relative one from the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
