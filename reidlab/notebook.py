"""Small helpers for the notebooks: show package code, pick the dataset, find paths from the repo root."""
from __future__ import annotations

import inspect

from reidlab.paths import DATA_ROOT


def show(obj) -> None:
    """Display the source of a package function or class (the package is the single source of truth)."""
    source = inspect.getsource(obj)
    try:
        from IPython.display import Markdown, display
        display(Markdown(f"```python\n{source}```"))
    except ImportError:
        print(source)


def default_dataset() -> str:
    """Market-1501 when `data_scripts/prepare_market1501.py` has put it under data/, else the synthetic set."""
    return "market1501" if (DATA_ROOT / "market1501").exists() else "synthetic"
