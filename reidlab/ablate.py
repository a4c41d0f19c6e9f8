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

import argparse
import json
import shutil
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reidlab.config import FIELD_NAMES, Config, check_keys, parse_sets, suggest
from reidlab.grids import UNTRAINED, build_grid
from reidlab.paths import REPO_ROOT, resolve
from reidlab.profiles import PROFILES, for_profile, profile_values, resolve_profile
from reidlab.records import keep_train_identities
from reidlab.runs import RunFolder

EXPERIMENT = REPO_ROOT / "notebooks" / "experiment.ipynb"
KERNEL = "python3"
# the kernel's own log would bury the progress bar: a warning per start about its local TCP sockets, and an
# "ERROR | KeyboardInterrupt caught in kernel" line when papermill stops a kernel it has finished with
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


class GridError(ValueError):
    """A grid that cannot run as given (unknown key, bad value); raised before any run starts."""


# --- one run's config: reidlab.profiles.for_profile, the one builder (the notebooks and `train` call it too) ----

def build_config(preset: str, profile: str = "auto", overrides: dict | None = None, smoke: bool = False,
                 dataset: str = "", device: str = "auto") -> Config:
    """profiles.for_profile with the overrides as a dict (what the experiment notebook's parameters hold); a
    dataset or device among them wins over the argument, as any override does."""
    overrides = dict(overrides or {})
    check_keys(overrides)  # a key that is no Config field ("smoke") is a ValueError naming the nearest one
    return for_profile(preset, profile, smoke=smoke, **{"dataset": dataset, "device": device, **overrides})


# --- evaluation without the training loop -----------------------------------------------------------------

def evaluate_split(model, cfg: Config, dataset, device) -> dict:
    """Metrics (percent) of `model` on a dataset's query / gallery, scored as cfg says."""
    from reidlab.evaluate import evaluate_model
    from reidlab.gpu_eval import evaluate_on_device
    from reidlab.loaders import build_test_loader

    if cfg.data_path == "resident":
        return evaluate_on_device(model, cfg, dataset, device)[0]
    query, gallery = build_test_loader(dataset.query, cfg), build_test_loader(dataset.gallery, cfg)
    metrics, _ = evaluate_model(model, query, gallery, cfg, device)
    return metrics


def evaluate_untrained(cfg: Config, out_dir: str | Path) -> dict:
    """The reference row: the network of `cfg` with random weights (never ImageNet's), evaluated as built.

    Writes a run folder like fit's (config.json, an empty history.jsonl, metrics.json with epochs 0)."""
    from reidlab.datasets import load_dataset
    from reidlab.model import build_model
    from reidlab.train import describe_device, pick_device, seed_epoch

    folder = RunFolder(out_dir)
    cfg = cfg.replace(pretrained=None)
    folder.save_config(cfg)
    device = pick_device(cfg.device)
    dataset = keep_train_identities(load_dataset(cfg.dataset, resolve(cfg.data_root) / cfg.dataset,
                                                 verbose=cfg.progress), cfg.train_ids)
    seed_epoch(cfg.seed, 0)  # the same initial weights fit would start from
    model = build_model(cfg, dataset.num_train_pids).to(device).eval()
    metrics = evaluate_split(model, cfg, dataset, device)
    metrics.update(epochs=0, device=describe_device(device), train_seconds=0.0,
                   num_train_pids=dataset.num_train_pids)
    folder.write_empty_history()
    folder.write_metrics(metrics)
    return metrics


def extract_test_features(run_dir: str | Path, dataset_name: str | None = None):
    """(features (N, D), pids (N,)) of a trained run on query + gallery (its own dataset by default), as the
    run scores them (test feature, normalised when cfg.normalize_features)."""
    import torch.nn.functional as F

    from reidlab.datasets import load_dataset
    from reidlab.evaluate import extract_features
    from reidlab.inference import load_run
    from reidlab.loaders import build_test_loader

    model, cfg = load_run(run_dir, device="auto")
    device = next(model.parameters()).device
    name = dataset_name or cfg.dataset
    dataset = load_dataset(name, resolve(cfg.data_root) / name, verbose=False)
    if cfg.data_path == "resident":  # from device memory (reidlab.gpu_eval), in fp32 as below
        from reidlab.gpu_eval import extract_device_features
        feats, pids, _, _ = extract_device_features(model, cfg.replace(amp="none", progress=False), dataset, device)
    else:
        loader = build_test_loader(list(dataset.query) + list(dataset.gallery), cfg)
        feats, pids, _ = extract_features(model, loader, device, flip=cfg.flip_test, progress=False)
    if cfg.normalize_features or cfg.distance == "cosine":
        feats = F.normalize(feats, dim=1)
    return feats, pids


def evaluate_cross_domain(run_dir: str | Path, test_dataset: str) -> dict:
    """Evaluate a trained run on another dataset's query / gallery (CVPRW Table 3) and rewrite its metrics.json:
    rank1 / mAP / mINP become the target domain's, the source domain's move under "source"."""
    from reidlab.datasets import load_dataset
    from reidlab.inference import load_run

    folder = RunFolder(run_dir)
    metrics = folder.metrics()
    if metrics.get("test_dataset") == test_dataset:
        return metrics
    model, cfg = load_run(folder.path, device="auto")
    device = next(model.parameters()).device
    target = load_dataset(test_dataset, resolve(cfg.data_root) / test_dataset, verbose=cfg.progress)
    cross = evaluate_split(model, cfg, target, device)
    source = {k: metrics.pop(k) for k in list(metrics) if k in cross}
    metrics = {**cross, "test_dataset": test_dataset, "train_dataset": cfg.dataset, "source": source, **metrics}
    folder.write_metrics(metrics)
    return metrics


def add_metrics(run_dir: str | Path, **values) -> dict:
    """Add values (R, ...) to a run's metrics.json, atomically; returns the updated metrics."""
    return RunFolder(run_dir).add_metrics(**values)


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


def notebook_parameters(notebook: str | Path = EXPERIMENT) -> tuple[str, ...]:
    """The names the notebook's `parameters` cell declares (papermill.inspect_notebook; without papermill, the
    cell read directly)."""
    notebook = Path(notebook)
    if not notebook.exists():
        raise FileNotFoundError(f"{notebook} not found; make it from its .py pair: "
                                f"jupytext --to ipynb {notebook.with_suffix('.py')}")
    try:
        import papermill
    except ImportError:
        from reidlab.executors import read_notebook_parameters
        return read_notebook_parameters(notebook)
    return tuple(papermill.inspect_notebook(str(notebook)))


def split_parameters(grid: str, spec: dict, declared: tuple[str, ...]) -> dict:
    """A run spec as notebook parameters: Config fields given at the top go into `overrides`; anything that is
    neither a declared parameter nor a Config field raises GridError naming the nearest valid name."""
    params, overrides = {}, dict(spec.get("overrides") or {})
    for key, value in spec.items():
        if key in ("name", "kind", "overrides"):
            continue
        if key in declared:
            params[key] = value
        elif key in FIELD_NAMES:
            overrides[key] = value
        else:
            raise GridError(f"grid {grid}, run {spec['name']}: unknown parameter {key!r}"
                            f"{suggest(key, declared + FIELD_NAMES)}")
    for key in overrides:
        if key not in FIELD_NAMES:
            raise GridError(f"grid {grid}, run {spec['name']}: unknown config key {key!r} in overrides"
                            f"{suggest(key, FIELD_NAMES)}")
    params["overrides"] = overrides
    return params


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
    """The metrics of a finished run in `folder`, or None. Raises when it was made with another config."""
    run_folder = RunFolder(folder)
    metrics = run_folder.metrics()
    if metrics is None:
        return None
    target = run.parameters.get("test_dataset")
    if target and metrics.get("test_dataset") != target:
        return None  # trained, not yet evaluated on the target domain: the notebook resumes and finishes it
    if run.parameters.get("intra_inter") and "R" not in metrics:
        return None  # the same: R is computed after training
    expected = run.config.to_dict()
    if run.kind == UNTRAINED:
        expected["pretrained"] = None
    changed = run_folder.changed(expected)
    if changed:
        raise RuntimeError(f"{folder} holds a finished run with another config ({', '.join(changed)} differ); "
                           f"rerun it with --force, or pass another --out")
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


def read_finished(cfg: Config, folder: str | Path) -> dict | None:
    """The metrics of a finished run of `cfg` in `folder`, which is then only read (neither trained nor scored
    again), else None. Raises when the folder holds a finished run of another config."""
    run_folder = RunFolder(folder)
    if not run_folder.finished():
        return None
    changed = run_folder.changed(cfg)
    if changed == ["epochs"]:
        return None  # fit trains the run further: reidlab.train.check_resume_config
    if changed:
        raise ValueError(f"{run_folder.path} holds a finished run with another config ({', '.join(changed)} "
                         f"differ); use another out_dir, or delete the folder to start over")
    return run_folder.metrics()


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
        metrics = add_metrics(folder, R=intra_inter_ratio(features, pids))
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
    import papermill

    papermill.execute_notebook(str(notebook), str(folder / notebook.name),
                               parameters={**run.parameters, "out_dir": str(folder)},
                               kernel_name=kernel_name, progress_bar=False, cwd=str(REPO_ROOT),
                               extra_arguments=KERNEL_ARGUMENTS)


def describe_error(e: BaseException) -> str:
    # papermill's error carries the notebook's exception: its name and message are what a reader needs
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(e).__name__}: {e}"


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

    from reidlab.executors import resolve_executor

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

    if jobs == 1:
        for i, run in enumerate(runs):
            bar.set_postfix_str(run.name)
            finish(i, run_one(run, out, notebook, kernel_name, executor, force))
    else:
        import torch

        from reidlab.executors import mps_status, run_in_processes

        if torch.cuda.is_available():
            print(mps_status(), file=sys.stderr)
        from reidlab.gpu_eval import decode_ahead
        decode_ahead([run.config for run in runs], progress=progress)  # once here, not once per process at once
        running = set()

        def started(i: int) -> None:
            running.add(runs[i].name)
            bar.set_postfix_str(", ".join(sorted(running)))

        todo = []  # (run index, arguments of run_one): finished runs are skipped here, without a process
        for i, run in enumerate(runs):
            if not force and needs_nothing(run, run.folder(out), notebook, executor):
                finish(i, ("skipped", ""))
            else:
                todo.append((i, (run, out, notebook, kernel_name, executor, force)))
        for k, outcome in run_in_processes(run_one, [args for _, args in todo], jobs,
                                           on_start=lambda k: started(todo[k][0])):
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


# --- command line -------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reidlab.grids import GRIDS

    parser.add_argument("grid", help=f"one of: {', '.join(GRIDS)}; or a YAML (or JSON) file of runs")
    parser.add_argument("--dataset", default="", help="train dataset (default: Market-1501 when prepared, "
                                                      "else synthetic; the smoke profile: synthetic_small)")
    parser.add_argument("--test-dataset", default="", help="cross_domain: the dataset to test on")
    parser.add_argument("--seeds", type=int, default=1, help="run each row with seed 0..N-1 (tables: mean +- std)")
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="change a Config field in every run")
    parser.add_argument("--out", default="results/runs", help="runs go to OUT/<grid>/<run>/")
    parser.add_argument("--profile", choices=PROFILES, default="auto",
                        help="cpu: small synthetic profile; full: the paper's recipe; smoke: seconds; "
                             "auto: full with CUDA and Market-1501, else cpu")
    parser.add_argument("--force", action="store_true", help="rerun finished runs (their folders are deleted)")
    parser.add_argument("--table", action="store_true", help="then build the table beside the paper's")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run N rows at once, in N worker processes. Default 1: on a 2-core CPU two smoke rows "
                             "side by side gave 0.6x the aggregate images/s of one (each worker's start and torch "
                             "import outweigh short runs; results/benchmarks/ablate_jobs_cpu.md); on a GPU, N = 2 or 4 "
                             "may fill what one run leaves idle, not yet measured: benchmarks/ablate_jobs.py there")
    parser.add_argument("--executor", choices=("auto", "papermill", "direct"), default="auto",
                        help="papermill: execute notebooks/experiment.ipynb per run; direct: train through "
                             "reidlab.train.fit without Jupyter (run papermill over the finished folder later for "
                             "the executed notebooks: it only reads them); auto: papermill when installed")


def run_from_args(args) -> int:
    try:
        report = run_grid(args.grid, dataset=args.dataset, seeds=args.seeds, sets=parse_sets(args.set),
                          out=args.out, profile=args.profile, force=args.force, test_dataset=args.test_dataset,
                          jobs=args.jobs, executor=args.executor)
    except (GridError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    if args.table:
        from reidlab.results import build_table, format_table, write_table
        name, dataset = report.runs[0].grid, report.runs[0].config.dataset
        table = build_table(name, dataset, root=args.out)
        print(format_table(table))
        for path in write_table(table, name, dataset):
            print(f"wrote {path}")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reidlab.ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
