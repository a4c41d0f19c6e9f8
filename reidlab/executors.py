"""How a batch of runs is executed: which executor (papermill or direct), and several runs side by side.

Nothing here knows what a run is; reidlab.ablate hands in a module-level function and its arguments.
  - "papermill" executes notebooks/experiment.ipynb per run (the executed notebook is kept in the run folder);
  - "direct" calls what the notebook calls (reidlab.train.fit, ...) without Jupyter, for machines that have
    neither papermill nor a kernel; the notebook run later over the finished folder only reads it;
  - "auto" is papermill when it can be imported, else direct.
Several runs at once: N worker processes, spawned (a forked copy of a process that touched CUDA is unusable), each
running one run after another as `--jobs 1` does in the calling process. A worker is kept for the next run rather
than started afresh: importing torch costs seconds (11 s for two processes at once on a loaded 2-core machine),
and a worker's resident test set (reidlab.gpu_eval) then serves its next run on the same data.
"""
from __future__ import annotations

import ast
import importlib
import json
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Iterator, Sequence

EXECUTORS = ("auto", "papermill", "direct")
EXPERIMENT = Path(__file__).resolve().parents[1] / "notebooks" / "experiment.ipynb"  # what papermill executes per run
KERNEL = "python3"
# the kernel's own log would bury the progress bar: a warning per start about its local TCP sockets, and an
# "ERROR | KeyboardInterrupt caught in kernel" line when papermill stops a kernel it has finished with
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
MPS_PIPE = "/tmp/nvidia-mps"  # nvidia-cuda-mps-control's default pipe directory


def papermill_available() -> bool:
    try:
        importlib.import_module("papermill")
    except ImportError:  # also when sys.modules["papermill"] is None
        return False
    return True


def resolve_executor(executor: str) -> str:
    """"papermill" or "direct": "auto" is papermill when importable, else direct."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not valid; allowed values: {', '.join(map(repr, EXECUTORS))}")
    if executor == "auto":
        return "papermill" if papermill_available() else "direct"
    if executor == "papermill" and not papermill_available():
        raise ValueError("executor='papermill' but papermill is not installed: pip install papermill ipykernel, "
                         "or use --executor direct (the same run folders, without the executed notebooks)")
    return executor


def read_notebook_parameters(notebook: str | Path) -> tuple[str, ...]:
    """The names a notebook's cell tagged `parameters` assigns, read without papermill (what
    papermill.inspect_notebook lists)."""
    nb = json.loads(Path(notebook).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            names = []
            for node in ast.parse(source).body:
                targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
                names += [t.id for t in targets if isinstance(t, ast.Name)]
            return tuple(names)
    raise ValueError(f"{notebook} has no code cell tagged 'parameters'")


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
        return read_notebook_parameters(notebook)
    return tuple(papermill.inspect_notebook(str(notebook)))


def execute_notebook(notebook: Path, folder: Path, parameters: dict, kernel_name: str = KERNEL) -> None:
    """papermill: `notebook` executed with `parameters` into folder/<its name>, from the repository's root."""
    import papermill

    papermill.execute_notebook(str(notebook), str(folder / notebook.name), parameters=parameters,
                               kernel_name=kernel_name, progress_bar=False, cwd=str(EXPERIMENT.parents[1]),
                               extra_arguments=KERNEL_ARGUMENTS)


def describe_error(e: BaseException) -> str:
    # papermill's error carries the notebook's exception: its name and message are what a reader needs
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(e).__name__}: {e}"


def mps_status() -> str:
    """One line on CUDA MPS (several processes' kernels on one GPU at once), which is used only when it runs."""
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", MPS_PIPE)
    if Path(pipe, "control").exists():
        return f"CUDA MPS is running (pipe {pipe}): the runs' kernels share the GPU concurrently"
    return ("CUDA MPS is not running: the runs time-slice the GPU (start it with `nvidia-cuda-mps-control -d` "
            "to let their kernels overlap)")


def prepare_processes(configs: Sequence, progress: bool = True) -> None:
    """Before runs start side by side: say whether CUDA MPS runs (on a GPU) and decode their training and test
    sets once here (reidlab.gpu_eval.decode_ahead), not once per process at the same time."""
    import sys

    import torch

    from reidlab.gpu_eval import decode_ahead

    if torch.cuda.is_available():
        print(mps_status(), file=sys.stderr)
    decode_ahead(list(configs), progress=progress)


def run_in_this_process(fn: Callable, jobs: Sequence[tuple], workers: int = 1,
                        on_start: Callable[[int], None] | None = None) -> Iterator[tuple[int, object]]:
    """run_in_processes' contract, one call after another in this process (`workers` is ignored)."""
    for index, args in enumerate(jobs):
        if on_start:
            on_start(index)
        yield index, fn(*args)


def run_in_processes(fn: Callable, jobs: Sequence[tuple], workers: int,
                     on_start: Callable[[int], None] | None = None) -> Iterator[tuple[int, object]]:
    """Call fn(*args) for each args in `jobs`, `workers` at a time, in that many spawned worker processes.

    Yields (index into jobs, return value or the exception that came instead) as they finish. fn must be
    importable by name (a module-level function) and should return its errors rather than raise them; an
    exception here means the call never returned: a worker died (killed out of memory, say), which fails the
    calls running beside it too (BrokenProcessPool); the calls not yet started go on in a fresh pool.
    Ctrl-C cancels what has not started and stops the pool.
    """
    def start_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    pool = start_pool()
    pending, queued = {}, list(enumerate(jobs))
    try:
        while queued or pending:
            while queued and len(pending) < workers:  # submit as slots free up: on_start names what runs now
                index, args = queued.pop(0)
                pending[pool.submit(fn, *args)] = index
                if on_start:
                    on_start(index)
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                index = pending.pop(future)
                try:
                    value = future.result()
                except Exception as e:  # the call never returned
                    value, broken = e, broken or isinstance(e, BrokenProcessPool)
                yield index, value
            if broken:  # the pool is unusable: what ran beside the dead worker failed with it
                for future, index in list(pending.items()):
                    yield index, BrokenProcessPool("a worker process died while this run was in progress")
                pending.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = start_pool()
    finally:
        pool.shutdown(wait=not queued and not pending, cancel_futures=True)
