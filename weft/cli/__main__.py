"""`python -m weft.cli`: the same as the `weft` command."""

import sys

from weft.cli.main import main

sys.exit(main())
