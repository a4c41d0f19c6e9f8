"""Draw the built-in synthetic dataset (Market-1501 layout) into a folder.

    python data_scripts/make_synthetic.py              # data/synthetic: the built-in set (datasets.SYNTHETIC_SET)
    python data_scripts/make_synthetic.py --num-ids 60 --root data/synthetic_small --workers 2
"""
import argparse

from reidlab.datasets import SYNTHETIC_SET
from reidlab.paths import DATA_ROOT
from reidlab.synthetic import make_synthetic


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(DATA_ROOT / "synthetic"),
                        help="output folder; a relative path is taken from the repository root")
    parser.add_argument("--num-ids", type=int, default=SYNTHETIC_SET["num_ids"],
                        help="identities, half train half test (then test-scale)")
    parser.add_argument("--seed", type=int, default=SYNTHETIC_SET["seed"])
    parser.add_argument("--test-scale", type=int, default=SYNTHETIC_SET["test_scale"],
                        help="test identities: this many times the half of num-ids (1: as many as train)")
    parser.add_argument("--num-distractors", type=int, default=None,
                        help="pid-0 gallery images (default: two per test identity)")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing in parallel (same bytes)")
    parser.add_argument("--overwrite", action="store_true", help="replace a synthetic dataset made with other settings")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    root = make_synthetic(args.root, num_ids=args.num_ids, seed=args.seed, progress=not args.quiet,
                          num_distractors=args.num_distractors, workers=args.workers, overwrite=args.overwrite,
                          test_scale=args.test_scale)
    print((root / "README.txt").read_text())


if __name__ == "__main__":
    main()
