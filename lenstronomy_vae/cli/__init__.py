"""Command line ``lenstronomy-vae``: ``demo`` (the main job), ``fit``, simulation, training, deblending, ``models``.

Exit codes: 0 success, 2 bad input (a one-line message names the problem), 1 anything else.
TensorFlow's own log lines are held back (see :mod:`lenstronomy_vae`); ``--verbose`` shows them.
"""

import os
import subprocess
import sys

import lenstronomy_vae
from lenstronomy_vae.cli.parser import build_parser

__all__ = ["build_parser", "main"]

# The command line again, in a new interpreter: what `--verbose` runs when TensorFlow was quieted.
_RERUN = "import sys; from lenstronomy_vae.cli import main; sys.exit(main(sys.argv[1:]))"


def main(argv=None):
    """Run one ``lenstronomy-vae`` command.

    Args:
        argv: the arguments after the program name; default ``sys.argv[1:]``.

    Returns:
        the exit code: 0 success, 2 bad input (a ValueError or FileNotFoundError, whose message
        goes to stderr on one line, with no traceback), 1 anything else (an unsupported
        lenstronomy for ``demo`` and ``fit``; an internal error raises).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.verbose and lenstronomy_vae.TENSORFLOW_QUIETED:
        # TensorFlow reads TF_CPP_MIN_LOG_LEVEL once, when first imported: only a new process shows every line.
        return subprocess.call([sys.executable, "-c", _RERUN, *argv], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        message = " ".join(str(error).split())
        print(f"lenstronomy-vae {args.command}: error: {message}", file=sys.stderr)
        return 2
    except ImportError as error:  # an unsupported lenstronomy, for the lensing commands
        print(f"lenstronomy-vae {args.command}: error: {error}", file=sys.stderr)
        return 1
