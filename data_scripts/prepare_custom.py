"""Place your own dataset (a folder with train/, query/, gallery/; see docs/datasets.md) under data/custom/ and
load it. pid and camera come from Market-style names (PPPP_cC...), from --regex, or from a labels.csv.

    python data_scripts/prepare_custom.py ~/my_cameras --regex '(?P<pid>\\d+)/cam(?P<cam>\\d+)_'
"""
import sys
from pathlib import Path

from reidlab.datasets import build_prepare_parser, run_prepare


def main(argv=None) -> int:
    parser = build_prepare_parser("custom", __doc__)
    parser.add_argument("--regex", help="named groups (?P<pid>...) and (?P<cam>...), searched in the path "
                                        "relative to the split folder")
    parser.add_argument("--csv", help="a `path,pid,camid` file (default: SOURCE/labels.csv when it exists)")
    args = parser.parse_args(argv)
    options = {"regex": args.regex} if args.regex else {}
    if args.csv:
        options["csv"] = Path(args.csv).expanduser().resolve()
    return run_prepare("custom", args, **options)


if __name__ == "__main__":
    sys.exit(main())
