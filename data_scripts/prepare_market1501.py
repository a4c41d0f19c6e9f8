"""Place your copy of Market-1501 under data/market1501/, load it and check the published counts.

    python data_scripts/prepare_market1501.py ~/Downloads/Market-1501-v15.09.15.zip
"""
import sys

from reidlab.datasets import build_prepare_parser, run_prepare


def main(argv=None) -> int:
    parser = build_prepare_parser("market1501", __doc__)
    return run_prepare("market1501", parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
