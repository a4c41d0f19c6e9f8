"""Place your copy of DukeMTMC-reID under data/dukemtmc/, load it and check the published counts.

    python data_scripts/prepare_dukemtmc.py ~/datasets/DukeMTMC-reID.zip
"""
import sys

from reidlab.datasets import build_prepare_parser, run_prepare


def main(argv=None) -> int:
    parser = build_prepare_parser("dukemtmc", __doc__)
    return run_prepare("dukemtmc", parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
