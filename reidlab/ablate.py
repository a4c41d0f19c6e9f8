"""Batch ablations: run a grid of configs through the experiment notebook with papermill.

    python -m reidlab.ablate tricks --dataset synthetic --profile cpu --seeds 3
    python -m reidlab.ablate my_grid.yaml --set epochs=4 --out runs/mine

Each run writes <out>/<grid>/<run>/ with run.json (what was asked), config.json, history.jsonl, metrics.json,
checkpoint.pt and experiment.ipynb (the executed notebook). `--executor direct` trains through reidlab.train.fit
without Jupyter (the same folder but the notebook; papermill run over the finished folder later only reads it and
adds the notebook); `--jobs N` runs N rows at once in N worker processes. Every run's parameters are checked
(notebook parameters, Config fields and values, and that its training set holds the P identities a batch needs)
before the first one starts. A finished run (metrics.json) is skipped, an interrupted one resumes from its
checkpoint (the previous one if a crash left the latest unreadable), a failed one is reported and the others go
on; --force reruns.
"""
from __future__ import annotations

import json
import shutil
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reidlab.config import Config, check_keys
from reidlab.evaluations import evaluate_cross_domain, evaluate_untrained, extract_test_features
from reidlab.executors import (EXPERIMENT, KERNEL, describe_error, execute_notebook, notebook_parameters,
                               prepare_processes, resolve_executor, run_in_processes, run_in_this_process)
from reidlab.grids import UNTRAINED, GridError, build_grid, split_parameters  # noqa: F401 (GridError: callers')
from reidlab.paths import resolve
from reidlab.profiles import build_config, profile_values, resolve_profile
from reidlab.runs import RunFolder, read_finished


# --- the batch ----------------------------------------------------------------------------------------------

@dataclass
class Run:
    grid: str
    name: str  # folder name: the row, with _seed<k> for seeds > 0
    row: str
    seed: int
    kind: str  # "notebook" or "untrained"
    parameters: dict  # the notebook's parameters (out_dir added when it runs)
    config: Config

    def folder(self, out: Path) -> Path:
        return out / self.grid / self.name


@dataclass
class Report:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)  # finished before; the notebook was executed over them

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"{len(self.done)} run(s) done, {len(self.skipped)} skipped (finished before), "
                 f"{len(self.failed)} failed"]
        if self.filled:
            lines.append(f"{len(self.filled)} finished run(s) given their executed notebook (read, not retrained)")
        lines += [f"  FAILED {name}: {error}" for name, error in self.failed.items()]
        return "\n".join(lines)


def plan_grid(grid: str, dataset: str = "", seeds: int = 1, sets: dict | None = None, profile: str = "auto",
              test_dataset: str = "", notebook: str | Path = EXPERIMENT) -> list[Run]:
    """Every run of a grid, checked (parameter names, Config keys and values) before anything runs."""
    if not isinstance(seeds, int) or seeds < 1:
        raise GridError(f"seeds={seeds!r} must be an int >= 1")
    sets = dict(sets or {})
    try:
        check_keys(sets)
    except ValueError as e:
        raise GridError(f"--set: {e}") from None
    if "seed" in sets and seeds > 1:
        raise GridError("--set seed=... and --seeds N > 1 contradict each other; --seeds runs seed 0..N-1")
    if "dataset" in sets:
        raise GridError("pass the dataset with --dataset NAME, not --set dataset=...")
    profile = resolve_profile(profile, dataset)
    try:
        name, specs = build_grid(grid, dataset=dataset, test_dataset=test_dataset,
                                 profile_values=profile_values(profile, dataset))
    except (ValueError, FileNotFoundError) as e:
        raise GridError(str(e)) from None
    declared = notebook_parameters(notebook)
    runs = []
    for spec in specs:
        params = split_parameters(name, spec, declared)
        params.setdefault("preset", "bot")
        params.setdefault("profile", profile)
        params.setdefault("dataset", dataset)
        collide = sorted(set(params["overrides"]) & set(sets) - {"progress"})
        if collide:
            print(f"warning: --set {', '.join(collide)} replaces what run {spec['name']} of grid {name} ablates",
                  file=sys.stderr)
        # batch runs print no progress bars, so executed notebooks stay small
        params["overrides"] = {"progress": False, **params["overrides"], **sets}
        # the untrained reference is one network with random weights: one seed says what it shows
        for seed in range(1 if spec.get("kind") == UNTRAINED else seeds):
            p = json.loads(json.dumps(params))  # a deep copy that is also JSON-able (papermill injects it)
            if seeds > 1:
                p["overrides"]["seed"] = seed
            try:
                cfg = build_config(p["preset"], p["profile"], p["overrides"], smoke=bool(p.get("smoke")),
                                   dataset=p.get("dataset", ""), device=p.get("device", "auto"))
            except (ValueError, TypeError) as e:
                raise GridError(f"grid {name}, run {spec['name']}: {e}") from None
            run_name = spec["name"] if seed == 0 else f"{spec['name']}_seed{seed}"
            runs.append(Run(name, run_name, spec["name"], cfg.seed, spec.get("kind", "notebook"), p, cfg))
    # seed by seed (every row of seed 0, then of seed 1, ...): a chain cut short still pairs its rows
    return sorted(runs, key=lambda run: run.seed)


def finished_metrics(run: Run, folder: Path) -> dict | None:
    """The metrics of a finished run in `folder` (runs.read_finished, as its executors decide), or None, also while
    the run still owes a cross-domain test or R. Raises when it was made with another config."""
    expected = run.config.to_dict()
    if run.kind == UNTRAINED:
        expected["pretrained"] = None
    metrics = read_finished(expected, folder, fix="rerun it with --force, or pass another --out")
    if metrics is None:
        return None
    target = run.parameters.get("test_dataset")
    if target and metrics.get("test_dataset") != target:
        return None  # trained, not yet evaluated on the target domain: the notebook resumes and finishes it
    if run.parameters.get("intra_inter") and "R" not in metrics:
        return None  # the same: R is computed after training
    return metrics


def check_datasets(runs: list[Run]) -> None:
    """Each run's training set loads and holds the P identities a P x K batch needs: checked once per dataset
    before the first run (a grid that cannot run stops before any folder is made), not run by run."""
    from reidlab.datasets import DatasetError, load_dataset

    num_ids = {}
    for run in runs:
        cfg = run.config
        key = (cfg.dataset, cfg.data_root)
        if key not in num_ids:
            try:
                num_ids[key] = load_dataset(cfg.dataset, resolve(cfg.data_root) / cfg.dataset,
                                            verbose=False).num_train_pids
            except DatasetError as e:
                raise GridError(f"grid {run.grid}, run {run.name}: {e}") from None
        n = min(num_ids[key], cfg.train_ids or num_ids[key])
        if run.kind != UNTRAINED and cfg.P > n:
            raise GridError(f"grid {run.grid}, run {run.name}: P={cfg.P} identities per batch, but dataset "
                            f"{cfg.dataset} has only {n} training identities; lower P to at most {n} (in the grid, "
                            f"or --set P={n} for every run), or train on a larger dataset (--dataset)")


def execute_direct(run: Run, folder: Path) -> dict:
    """The experiment notebook's cells without Jupyter: read a finished run or train it (fit), then the
    cross-domain test and R when the run asks for them. Writes all the notebook writes but the executed notebook."""
    from reidlab.train import fit

    test_dataset = run.parameters.get("test_dataset")
    metrics = read_finished(run.config, folder)
    if metrics is None:
        metrics = fit(run.config, folder)
    if test_dataset:
        metrics = evaluate_cross_domain(folder, test_dataset)
    if run.parameters.get("intra_inter") and "R" not in metrics:
        from reidlab.results import intra_inter_ratio
        features, pids = extract_test_features(folder, test_dataset or None)
        metrics = RunFolder(folder).add_metrics(R=intra_inter_ratio(features, pids))
    return metrics


def execute_run(run: Run, folder: Path, notebook: Path, kernel_name: str, executor: str = "papermill") -> None:
    """One run into `folder` with the "papermill" or the "direct" executor (reidlab.executors)."""
    folder.mkdir(parents=True, exist_ok=True)
    asked = json.dumps({"grid": run.grid, "row": run.row, "seed": run.seed, "kind": run.kind,
                        "parameters": run.parameters}, indent=2) + "\n"
    RunFolder(folder).write_run_info(asked)
    if run.kind == UNTRAINED:
        evaluate_untrained(run.config, folder)
        return
    if executor == "direct":
        execute_direct(run, folder)
        return
    execute_notebook(notebook, folder, {**run.parameters, "out_dir": str(folder)}, kernel_name)


def run_grid(grid: str, dataset: str = "", seeds: int = 1, sets: dict | None = None, out: str | Path = "results/runs",
             profile: str = "auto", force: bool = False, test_dataset: str = "",
             notebook: str | Path = EXPERIMENT, kernel_name: str = KERNEL, progress: bool = True,
             jobs: int = 1, executor: str = "auto", rows: Sequence[str] | None = None) -> Report:
    """Run every run of `grid` (a name in reidlab.grids.GRIDS or a YAML file) and report what happened.

    `jobs` runs at once in as many worker processes (1: one after another, in this process); `executor`
    "papermill", "direct" or "auto" (reidlab.executors). `rows`: only these rows of the grid (e.g. one row's
    extra seeds, as `make demo` runs them).
    """
    from tqdm.auto import tqdm

    if not isinstance(jobs, int) or jobs < 1:
        raise GridError(f"jobs={jobs!r} must be an int >= 1")
    executor = resolve_executor(executor)

    runs = plan_grid(grid, dataset, seeds, sets, profile, test_dataset, notebook)
    if rows is not None:
        unknown = sorted(set(rows) - {run.row for run in runs})
        if unknown:
            raise GridError(f"grid {runs[0].grid} has no row {', '.join(map(repr, unknown))}; its rows: "
                            f"{', '.join(dict.fromkeys(run.row for run in runs))}")
        runs = [run for run in runs if run.row in rows]
    check_datasets(runs)
    out, notebook = resolve(out), resolve(notebook)
    report = Report(runs=runs)
    bar = tqdm(total=len(runs), desc=f"grid {runs[0].grid}", unit="run", disable=not progress)
    outcomes = {}  # run index -> (status, error)

    def finish(i: int, outcome: tuple[str, str]) -> None:
        outcomes[i] = outcome
        if outcome[0] == "failed":  # reported now; the others go on
            bar.write(f"FAILED {runs[i].name}: {outcome[1]}", file=sys.stderr)
        bar.update()

    # the same with any `jobs`: finished runs are skipped here; the rest run in this process (jobs 1) or in
    # `jobs` worker processes, whose training sets are decoded once here rather than by each at once
    todo = []  # (run index, arguments of run_one)
    for i, run in enumerate(runs):
        if not force and needs_nothing(run, run.folder(out), notebook, executor):
            finish(i, ("skipped", ""))
        else:
            todo.append((i, (run, out, notebook, kernel_name, executor, force)))
    if jobs > 1 and todo:
        prepare_processes([runs[i].config for i, _ in todo], progress)
    running = set()

    def started(k: int) -> None:
        running.add(runs[todo[k][0]].name)
        bar.set_postfix_str(", ".join(sorted(running)))

    runner = run_in_processes if jobs > 1 else run_in_this_process
    for k, outcome in runner(run_one, [args for _, args in todo], jobs, on_start=started):
        i = todo[k][0]
        running.discard(runs[i].name)
        bar.set_postfix_str(", ".join(sorted(running)))
        if isinstance(outcome, BaseException):  # the process died (out of memory?): no outcome came back
            outcome = ("failed", f"{describe_error(outcome)} (see {runs[i].folder(out)})")
        finish(i, outcome)
    bar.close()
    for i, run in enumerate(runs):  # the report lists runs in the grid's order, however they finished
        status, error = outcomes[i]
        if status == "failed":
            report.failed[run.name] = error
        else:
            getattr(report, status).append(run.name)
    return report


def needs_nothing(run: Run, folder: Path, notebook: Path, executor: str) -> bool:
    """The run finished before with this config, and has its executed notebook when papermill executes."""
    try:
        if finished_metrics(run, folder) is None:
            return False
    except Exception:  # another config: run_one reports it
        return False
    return executor != "papermill" or run.kind == UNTRAINED or (folder / notebook.name).exists()


def run_one(run: Run, out: Path, notebook: Path, kernel_name: str, executor: str, force: bool) -> tuple[str, str]:
    """Execute one run into its folder: ("done" | "skipped" | "filled", "") or ("failed", why). Errors are
    returned, not raised, so that a run in another process reports them the same way."""
    folder = run.folder(out)
    try:
        if force and folder.exists():
            shutil.rmtree(folder)
        elif needs_nothing(run, folder, notebook, executor):
            return "skipped", ""
        elif finished_metrics(run, folder) is not None:
            execute_run(run, folder, notebook, kernel_name, executor)  # the notebook only reads the finished run
            return "filled", ""
        execute_run(run, folder, notebook, kernel_name, executor)
        if finished_metrics(run, folder) is None:
            raise RuntimeError(f"the {'notebook' if executor == 'papermill' else 'run'} finished but wrote no "
                               f"metrics.json into {folder}")
        return "done", ""
    except KeyboardInterrupt:
        raise
    except Exception as e:  # one failed run must not stop the others
        if folder.exists():  # the executed notebook shows a notebook's error; this file any other's
            (folder / "error.txt").write_text(traceback.format_exc())
        return "failed", f"{describe_error(e)} (see {folder})"


if __name__ == "__main__":  # python -m reidlab.ablate: the command line lives in reidlab.ablate_cli (which imports
    import runpy             # this module, so it runs by name here rather than being imported back)

    runpy.run_module("reidlab.ablate_cli", run_name="__main__")
