"""A run folder, read and written in one place: its config, metrics, history and checkpoints.

A run folder holds `config.json` (the Config), `history.jsonl` (one line per epoch), `iterations.jsonl` (the first
`cfg.log_iterations` iterations), `metrics.json` (written last: a folder with it is finished), `run.json` (what a
grid asked for, reidlab.ablate), `reused_from.txt` (a notebook's copy of another folder's run, without its
checkpoints) and the checkpoints: `checkpoint.pt` (the latest) and `checkpoint.prev.pt` (the one before).

Checkpoints survive a crash: a save writes `checkpoint.pt.tmp` to the end (fsync), then renames the latest to the
previous and the new file to the latest, so a crash at any instant leaves a whole checkpoint under one of the two
names; a failed write (a full disk) leaves both as they were. A read falls back to the previous checkpoint when the
latest cannot be read.

Whether a folder's run is "the same run" as a Config: every field but the result-neutral ones (`neutral_fields`,
marked on the Config fields themselves) must match, and the dataset on disk must still be the one it was trained and
scored on (`metrics.json`'s "train_set" and "test_set", from `ReidDataset.split_keys`).
"""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

from reidlab.config import Config, changed_fields, neutral_fields
from reidlab.paths import resolve

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
    import torch  # here, not at import: reading a folder's JSON files (reidlab.viz) needs no torch

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
    import torch

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


# --- JSON files ---------------------------------------------------------------------------------------------------

def write_json(obj, path: Path) -> None:
    """`obj` as indented JSON, atomically (written beside, then renamed)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_jsonl(record: dict, path: Path) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_jsonl(path: Path, key: str, last: int) -> None:
    """Drop lines past `last` (written after the checkpoint a resumed run starts from)."""
    kept = [r for r in read_jsonl(path) if r[key] <= last]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))


# --- the run folder -------------------------------------------------------------------------------------------------

class RunFolder:
    """One run's folder: `RunFolder(path).metrics()`, `.config()`, `.history()`, `.load_checkpoint()`, ..."""

    CONFIG, METRICS, HISTORY, ITERATIONS, RUN_INFO, REUSED_FROM = (
        "config.json", "metrics.json", "history.jsonl", "iterations.jsonl", "run.json", "reused_from.txt")
    RESULTS = (CONFIG, HISTORY, ITERATIONS, METRICS)  # what a copy of a finished run needs (no checkpoints)

    def __init__(self, path: str | Path):
        self.path = resolve(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    # config
    def has_config(self) -> bool:
        return self.file(self.CONFIG).exists()

    def config(self) -> Config:
        return Config.load(self.file(self.CONFIG))

    def config_dict(self) -> dict:
        """config.json as a dict ({} without one), through Config when it loads (an old spelling, data_path "gpu",
        then compares equal to today's)."""
        if not self.has_config():
            return {}
        saved = json.loads(self.file(self.CONFIG).read_text())
        try:
            return Config.from_dict(saved).to_dict()
        except (TypeError, ValueError):
            return saved

    def save_config(self, cfg: Config) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        cfg.save(self.file(self.CONFIG))

    def changed(self, cfg: Config | dict, also: tuple[str, ...] = ()) -> list[str]:
        """The fields where the saved config differs from `cfg`, but the result-neutral ones and `also`."""
        wanted = cfg if isinstance(cfg, dict) else cfg.to_dict()
        return changed_fields(self.config_dict(), wanted, neutral_fields() + tuple(also))

    def trains_further(self, cfg: Config | dict) -> bool:
        """`cfg` is the saved run asked for more epochs (result-neutral fields aside): fit resumes and extends it.
        Fewer epochs is another run: the saved one has trained past them."""
        wanted, saved = cfg if isinstance(cfg, dict) else cfg.to_dict(), self.config_dict()
        return (changed_fields(saved, wanted, neutral_fields()) == ["epochs"]
                and wanted["epochs"] > saved["epochs"])

    def matches(self, cfg: Config | dict) -> bool:
        return self.has_config() and not self.changed(cfg)

    # metrics: written last, so a folder with them is finished
    def finished(self) -> bool:
        return self.file(self.METRICS).exists()

    def metrics(self) -> dict | None:
        return json.loads(self.file(self.METRICS).read_text()) if self.finished() else None

    def write_metrics(self, metrics: dict) -> None:
        write_json(metrics, self.file(self.METRICS))

    def add_metrics(self, **values) -> dict:
        """Add values to metrics.json, atomically; returns the updated metrics."""
        metrics = {**(self.metrics() or {}), **values}
        self.write_metrics(metrics)
        return metrics

    # history (per epoch) and iterations (per step)
    def history(self) -> list[dict]:
        return read_jsonl(self.file(self.HISTORY))

    def append_history(self, record: dict) -> None:
        append_jsonl(record, self.file(self.HISTORY))

    def append_iteration(self, record: dict) -> None:
        append_jsonl(record, self.file(self.ITERATIONS))

    def rewind(self, epoch: int, iteration: int) -> None:
        """Forget the history and iterations written after the checkpoint a resumed run starts from."""
        truncate_jsonl(self.file(self.HISTORY), "epoch", epoch)
        truncate_jsonl(self.file(self.ITERATIONS), "iteration", iteration)

    def start_over(self) -> None:
        """Clear what a previous run wrote here (results and checkpoints): a fresh run never mixes with it."""
        for name in (self.HISTORY, self.ITERATIONS, self.METRICS):
            self.file(name).unlink(missing_ok=True)
        remove_checkpoints(self.path)

    def write_empty_history(self) -> None:
        self.file(self.HISTORY).write_text("")

    # what a grid asked for
    def run_info(self) -> dict:
        return json.loads(self.file(self.RUN_INFO).read_text()) if self.file(self.RUN_INFO).exists() else {}

    def write_run_info(self, text: str) -> None:
        """run.json, rewritten only when it changes (its time stamp then says when the request last changed)."""
        path = self.file(self.RUN_INFO)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)

    # checkpoints
    def has_checkpoint(self) -> bool:
        return has_checkpoint(self.path)

    def checkpoint_file(self) -> Path:
        return self.file(CHECKPOINT)

    def load_checkpoint(self, map_location=None, set_aside: bool = False) -> tuple[dict, Path]:
        return load_checkpoint(self.path, map_location, set_aside)

    def save_checkpoint(self, state: dict) -> Path:
        return save_checkpoint(state, self.path)

    # a notebook's copy of another folder's finished run
    def copy_results_from(self, source: "RunFolder") -> None:
        import shutil

        self.path.mkdir(parents=True, exist_ok=True)
        for name in self.RESULTS:
            if source.file(name).exists():
                shutil.copy2(source.file(name), self.file(name))
        self.file(self.REUSED_FROM).write_text(f"{source.path}\n")

    def trained(self) -> "RunFolder":
        """The folder holding this run's checkpoints: a copy names its source in reused_from.txt (followed here,
        copy after copy)."""
        folder = self
        while folder.file(self.REUSED_FROM).exists() and not folder.has_checkpoint():
            folder = RunFolder(folder.file(self.REUSED_FROM).read_text().strip())
        return folder


def read_finished(cfg: Config | dict, folder: str | Path,
                  fix: str = "use another out_dir, or delete the folder to start over") -> dict | None:
    """The metrics of a finished run of `cfg` in `folder`, which is then only read (neither trained nor scored
    again), else None: not finished, finished with fewer epochs than asked (fit trains it further), or scored on a
    test set that has changed since (fit scores its last checkpoint again; it says so). Raises ValueError, ending
    with `fix`, when the folder holds a finished run of another config, of another training set, or of another
    test set with no checkpoint left to score. The notebooks, the direct executor and the batch runner all decide
    through it."""
    run_folder = RunFolder(folder)
    if not run_folder.finished():
        return None
    changed = run_folder.changed(cfg)
    if changed and run_folder.trains_further(cfg):
        return None  # fit trains the run further: reidlab.train.check_resume_config
    if changed:
        raise ValueError(f"{run_folder.path} holds a finished run with another config ({', '.join(changed)} "
                         f"differ); {fix}")
    metrics = run_folder.metrics()
    moved = changed_data(metrics, cfg if isinstance(cfg, dict) else cfg.to_dict())
    if "train_set" in moved:
        raise ValueError(f"{run_folder.path} holds a finished run trained on another training set ({moved['train_set']}"
                         f"); {fix}")
    if "test_set" in moved:
        rescore = run_folder.has_checkpoint() or metrics.get("epochs") == 0
        if not rescore:
            raise ValueError(f"{run_folder.path} holds a finished run scored on another test set "
                             f"({moved['test_set']}) and no checkpoint to score it again; {fix}")
        say_once(f"{run_folder.path}: scored on another test set ({moved['test_set']}); scoring it again")
        return None
    return metrics


@functools.lru_cache(maxsize=None)
def say_once(line: str) -> None:
    """Print `line` the first time only: a batch run asks read_finished about one folder several times."""
    print(line)


def changed_data(metrics: dict, cfg: dict) -> dict[str, str]:
    """{"train_set" / "test_set": "was ..., now ..."} for each split of the run's dataset that differs on disk from
    the one metrics.json names; {} when none does, or when it cannot be told (a run from before reidlab kept the
    keys, a dataset folder that is not there)."""
    if "train_set" not in metrics and "test_set" not in metrics:
        return {}
    name = metrics.get("test_dataset") or cfg["dataset"]  # a cross-domain run is scored on another dataset
    now = split_keys_now(name, str(resolve(cfg["data_root"]) / name), cfg["train_ids"])
    if now is None:
        return {}
    if metrics.get("test_dataset"):
        now = {"test_set": now["test_set"]}  # its training set is cfg.dataset's, checked when it is scored again
    return {split: f"was {metrics[split]}, now {key}" for split, key in now.items()
            if split in metrics and metrics[split] != key}


def split_keys_now(name: str, root: str, train_ids: int = 0) -> dict[str, str] | None:
    """ReidDataset.split_keys of the dataset in `root` as it is now, or None when it is not there or cannot be
    read; read again only when one of its folders has changed (a grid asks once per run)."""
    if not Path(root).is_dir():
        return None
    return _split_keys(name, root, train_ids, folder_stamps(Path(root)))


def folder_stamps(root: Path, depth: int = 2) -> tuple:
    """(path, modification time) of `root` and the folders under it to `depth` (Market: ROOT/<release>/query; the
    synthetic set: ROOT/query): an image added, removed or renamed changes its folder's time."""
    stamps, level = [(str(root), root.stat().st_mtime_ns)], [root]
    for _ in range(depth):
        level = [Path(e.path) for folder in level for e in os.scandir(folder) if e.is_dir()]
        stamps += [(str(f), f.stat().st_mtime_ns) for f in level]
    return tuple(sorted(stamps))


@functools.lru_cache(maxsize=8)
def _split_keys(name: str, root: str, train_ids: int, stamps: tuple) -> dict[str, str] | None:
    from reidlab.datasets import load_dataset
    from reidlab.records import DatasetError, keep_train_identities

    try:
        return keep_train_identities(load_dataset(name, root, verbose=False), train_ids).split_keys()
    except (DatasetError, OSError):
        return None


def is_finished(run_dir: str | Path) -> bool:
    return RunFolder(run_dir).finished()


def load_history(run_dir: str | Path) -> list[dict]:
    return RunFolder(run_dir).history()
