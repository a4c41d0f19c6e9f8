"""Place your copy of CUHK03-NP (the `cuhk03-np/` folder or its zip) under data/cuhk03/, load the detected and
labeled variants and check the published counts.

    python data_scripts/prepare_cuhk03.py ~/datasets/cuhk03-np.zip
"""
import sys

from reidlab.datasets import build_prepare_parser, run_prepare


def main(argv=None) -> int:
    parser = build_prepare_parser("cuhk03", __doc__)
    parser.add_argument("--variant", choices=("detected", "labeled", "both"), default="both")
    args = parser.parse_args(argv)
    variants = ("detected", "labeled") if args.variant == "both" else (args.variant,)
    return max(run_prepare("cuhk03", args, variant=v) for v in variants)


if __name__ == "__main__":
    sys.exit(main())
