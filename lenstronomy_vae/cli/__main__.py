"""``python -m lenstronomy_vae.cli``: the ``lenstronomy-vae`` command."""

import sys

from lenstronomy_vae.cli import main

sys.exit(main())
