"""Command line ``lenstronomy-vae``: ``demo`` (the main job), ``fit``, simulation, training, deblending, ``models``.

Exit codes: 0 success, 2 bad input (the message says what and how to fix it), 1 anything else.
"""

import sys

from lenstronomy_vae.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"lenstronomy-vae {args.command}: error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:  # an unsupported lenstronomy, for the lensing commands
        print(f"lenstronomy-vae {args.command}: error: {error}", file=sys.stderr)
        return 1
