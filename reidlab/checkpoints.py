"""Checkpoints that survive a crash: the latest and the one before, each written atomically.

A run folder holds `checkpoint.pt` (the latest) and `checkpoint.prev.pt` (the one before). A save writes
`checkpoint.pt.tmp` to the end (fsync), then renames the latest to the previous and the new file to the latest,
so a crash at any instant leaves a whole checkpoint under one of the two names; a failed write (a full disk)
leaves both as they were. A read falls back to the previous checkpoint when the latest cannot be read.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
UNREADABLE = "checkpoint.pt.unreadable"  # an unreadable latest, moved aside so a save cannot rotate it in
REQUIRED_KEYS = ("epoch", "model", "num_classes")


class CheckpointError(RuntimeError):
    """No readable checkpoint in a run folder."""


def has_checkpoint(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / CHECKPOINT).exists() or (run_dir / PREVIOUS).exists()


def remove_checkpoints(run_dir: str | Path) -> None:
    """Delete a run folder's checkpoints (a run that starts over must never fall back to an old one)."""
    for name in (CHECKPOINT, PREVIOUS, UNREADABLE, CHECKPOINT + ".tmp"):
        (Path(run_dir) / name).unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    # the renames are durable once the folder's entry is on disk (no directory fsync on Windows)
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(state: dict, run_dir: str | Path) -> Path:
    """Write `state` as run_dir/checkpoint.pt, keeping the one it replaces as checkpoint.prev.pt.

    If the write fails (OSError: a full disk, a quota), both checkpoints on disk are left as they were and the
    error names the file and what to do.
    """
    run_dir = Path(run_dir)
    latest, previous, tmp = run_dir / CHECKPOINT, run_dir / PREVIOUS, run_dir / (CHECKPOINT + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(e.errno, f"could not write the checkpoint {latest} ({e.strerror or e}). The checkpoints "
                                   f"already in {run_dir} are untouched; free some space (or fix the cause) and run "
                                   f"the same command again to resume from them") from e
        raise
    # between these two renames only the previous name exists: a reader falls back to it
    if latest.exists():
        os.replace(latest, previous)
    os.replace(tmp, latest)
    _fsync_dir(run_dir)
    return latest


def read_checkpoint(path: Path, map_location=None) -> dict:
    """One checkpoint file, or CheckpointError saying what is wrong with it."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # a truncated zip, a bad pickle, an I/O error: all mean "cannot be read"
        size = path.stat().st_size
        if size == 0:
            raise CheckpointError(f"{path} cannot be read (it is empty: a write that never finished)") from e
        why = (str(e).strip().splitlines() or [""])[0].split(". ")[0]  # torch's first sentence says enough
        raise CheckpointError(f"{path} cannot be read ({size} bytes; truncated or corrupt: "
                              f"{type(e).__name__}: {why})") from e
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a reidlab checkpoint (it lacks {', '.join(missing)})")
    return state


def load_checkpoint(run_dir: str | Path, map_location=None, set_aside: bool = False) -> tuple[dict, Path]:
    """(state, path) of the newest readable checkpoint of `run_dir`: the latest, else the previous one.

    Falling back prints one line saying so. `set_aside=True` (the training loop, which then writes new ones)
    renames an unreadable latest to checkpoint.pt.unreadable, so the next save cannot rotate it over the good
    previous one. When neither can be read, CheckpointError names both files, what is wrong, and the ways out.
    """
    run_dir = Path(run_dir)
    latest, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
    try:
        return read_checkpoint(latest, map_location), latest
    except CheckpointError as e:
        latest_problem = e
    try:
        state = read_checkpoint(previous, map_location)
    except CheckpointError as e:
        raise CheckpointError(
            f"no readable checkpoint in {run_dir}: {latest_problem}; {e}. Start the run over: delete the "
            f"folder {run_dir}, or train again with --restart (python -m reidlab train) or resume=False "
            f"(reidlab.train.fit)") from None
    if set_aside and latest.exists():
        os.replace(latest, run_dir / UNREADABLE)
    print(f"warning: {latest_problem}; using the previous checkpoint {previous} (epoch {state['epoch']})",
          file=sys.stderr)
    return state, previous
