"""Place your copy of MSMT17 (V1 or V2) under data/msmt17/, load it and check the published counts.

    python data_scripts/prepare_msmt17.py ~/datasets/MSMT17_V1.tar.gz
"""
import sys

from reidlab.datasets import build_prepare_parser, run_prepare


def main(argv=None) -> int:
    parser = build_prepare_parser("msmt17", __doc__)
    parser.add_argument("--no-val", action="store_true",
                        help="train on list_train.txt only (30,248 images; the published count 32,621 needs val)")
    args = parser.parse_args(argv)
    return run_prepare("msmt17", args, include_val=not args.no_val)


if __name__ == "__main__":
    sys.exit(main())
