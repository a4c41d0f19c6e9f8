"""Command line: `python -m reidlab {demo,market,train,ablate,verify,export,rank}` (also installed as `reidlab`)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from reidlab import config
from reidlab.config import PRESETS, Config
from reidlab.profiles import PROFILES, for_profile


def parse_sets(pairs: list[str]) -> dict:
    try:
        return config.parse_sets(pairs)
    except ValueError as e:
        raise SystemExit(str(e)) from None


def build_config(preset: str, profile: str, sets: list[str]) -> Config:
    """`train`'s config: profiles.for_profile, the builder the notebooks and ablate use, with the --set pairs as
    overrides (dataset= and device= among them too). Bad input exits with one line."""
    overrides = parse_sets(sets)
    try:
        return for_profile(preset, profile, **overrides)
    except ValueError as e:
        raise SystemExit(str(e)) from None


def cmd_train(args) -> None:
    from reidlab.train import fit
    cfg = build_config(args.preset, args.profile, args.set)
    metrics = fit(cfg, args.out, resume=not args.restart)
    print(json.dumps(metrics, indent=2))


def cmd_verify(args) -> None:
    from reidlab.datasets import load_dataset, verify_images
    dataset = load_dataset(args.dataset, args.root)
    verify_images(dataset)
    print("all images decode")


def cmd_market(args) -> None:
    from reidlab.demo import run_market
    if not run_market(seeds=args.seeds, jobs=args.jobs).ok:
        raise SystemExit(1)


def cmd_demo(args) -> None:
    from reidlab.demo import run_demo
    if not run_demo(out=args.out, force=args.force, seeds=args.seeds, jobs=args.jobs, executor=args.executor).ok:
        raise SystemExit(1)


def cmd_ablate(args) -> None:
    from reidlab.ablate_cli import run_from_args
    code = run_from_args(args)
    if code:
        raise SystemExit(code)


def cmd_export(args) -> None:
    from reidlab.export import export_onnx, input_errors
    try:
        report = export_onnx(args.run, args.onnx, exporter=args.exporter)
    except input_errors() as e:  # each names the problem and the fix: no traceback
        raise SystemExit(f"error: {type(e).__name__}: {e}") from None
    print(f"wrote {report['onnx']} ({report['bytes'] / 2**20:.1f} MiB, {report['exporter']} exporter); check on a "
          f"batch of {report['batch']} with onnxruntime: min cosine {report['min_cosine']:.8f}, largest "
          f"difference {report['max_abs_difference']:.2e}")


def cmd_rank(args) -> None:
    from reidlab.export import input_errors
    from reidlab.ranking import format_ranking, rank_folders, write_html
    try:
        ranking = rank_folders(args.run, args.query, args.gallery, top_k=args.top, device=args.device)
        print(format_ranking(ranking))
        if args.html:
            print(f"\nwrote {write_html(ranking, args.html)}")
    except input_errors() as e:
        raise SystemExit(f"error: {type(e).__name__}: {e}") from None


def cmd_gpucheck(args) -> None:
    import shlex

    from reidlab import gpucheck
    args.command_line = "python -m reidlab " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)
    gpucheck.main(args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="reidlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("market", help="the trick-by-trick ablation on real Market-1501 in its CPU profile (about "
                                      "two hours on 2 cores; resumes), published in results/tables/")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="rows at once (default: one per core, at most 2)")
    p.set_defaults(func=cmd_market)

    p = sub.add_parser("demo", help="the trick-by-trick ablation on the built-in synthetic data, then the committed "
                                    "Market-1501 table")
    p.add_argument("--out", default="results/runs")
    p.add_argument("--force", action="store_true", help="rerun finished runs")
    p.add_argument("--seeds", type=int, default=3, help="run each row with seed 0..N-1 (default 3): mean +- std, "
                                                        "and each trick's change with a 95%% interval")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="rows at once (default: one per core, at most 2)")
    p.add_argument("--executor", choices=("direct", "papermill", "auto"), default="direct",
                   help="direct (default): train through reidlab.train.fit; papermill: execute the experiment "
                        "notebook per run (slower: a kernel per run)")
    p.set_defaults(func=cmd_demo)

    from reidlab.ablate_cli import add_arguments
    p = sub.add_parser("ablate",
                       help="run a grid of the paper's tables (or a YAML / JSON file), through papermill or directly")
    add_arguments(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("train", help="train and evaluate one config")
    p.add_argument("--preset", default="bot", help=f"one of: {', '.join(PRESETS)}")
    p.add_argument("--profile", choices=PROFILES, default="full",
                   help="full (default): the paper's recipe; cpu: the small profile that runs in minutes on a "
                        "laptop; smoke: seconds; auto: full with CUDA and a prepared real dataset, else cpu. "
                        "The dataset: --set dataset=NAME (default: Market-1501 when prepared, else synthetic; "
                        "smoke: synthetic_small)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config fields: --set a=1 b=2, or --set a=1 --set b=2")
    p.add_argument("--out", required=True, help="run folder (resumes when it holds a checkpoint)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("verify", help="decode every image of a dataset once, naming any corrupt file")
    p.add_argument("dataset")
    p.add_argument("--root", default=None)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("export", help="export a finished run's test-time feature to ONNX, checked with onnxruntime")
    p.add_argument("run", help="a finished run folder (config.json, checkpoint.pt, metrics.json)")
    p.add_argument("--onnx", required=True, metavar="FILE", help="where to write the model (FILE.onnx)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo",
                   help="torch.onnx's exporter (default dynamo; torchscript is faster to export but deprecated)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("rank", help="rank a gallery folder for each query image with a run or an exported ONNX file")
    p.add_argument("run", help="a finished run folder or an exported .onnx file")
    p.add_argument("--query", required=True, metavar="DIR", help="folder of query images")
    p.add_argument("--gallery", required=True, metavar="DIR", help="folder of gallery images")
    p.add_argument("--top", type=int, default=10, metavar="K", help="gallery images shown per query (default 10)")
    p.add_argument("--html", metavar="OUT", help="also write a self-contained HTML page of the rankings")
    p.add_argument("--device", default="auto", help="for a run folder: auto, cpu, cuda")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("gpucheck", help="graph vs eager, training / evaluation timings on a GPU (<= 6 min): "
                                        "reidlab/gpucheck/")
    p.add_argument("--quick", action="store_true", help="CPU-sized smoke run: tiny models and images, a few steps")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is visible")
    p.add_argument("--market", default=None, help="Market-1501 folder or archive (default: .device/, data/, ../shared)")
    p.add_argument("--steps", type=int, default=100, help="timed steps per training pipeline")
    p.add_argument("--budget", type=float, default=360, help="seconds for the whole check")
    p.add_argument("--parts", default=None,
                   help="comma-separated subset of: check,train,eval,fit,profile (data always runs)")
    p.add_argument("--out", default="results/benchmarks", help="folder of the record (json + md)")
    p.add_argument("--also-to", default=None, help="a second folder for the record (the device machine's $OUT)")
    p.set_defaults(func=cmd_gpucheck, argv=argv)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except user_errors() as e:  # each names the problem and the fix; REIDLAB_DEBUG=1 shows the traceback
        if os.environ.get("REIDLAB_DEBUG"):
            raise
        raise SystemExit(f"error: {type(e).__name__}: {e}") from None


def user_errors() -> tuple[type[Exception], ...]:
    """What bad input raises (a wrong path, a corrupt checkpoint, a diverging run): one line, no traceback."""
    from reidlab.runs import CheckpointError
    from reidlab.datasets import DatasetError
    from reidlab.inference import CheckpointMismatch
    from reidlab.pretrained import PretrainedWeightsError
    from reidlab.train import TrainingDiverged

    return (CheckpointError, CheckpointMismatch, DatasetError, PretrainedWeightsError, TrainingDiverged, ValueError)


if __name__ == "__main__":
    sys.exit(main())
