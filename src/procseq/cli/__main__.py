"""``python -m procseq.cli ...`` (e.g. under ``accelerate launch``)."""

import sys

from procseq.cli import main

sys.exit(main())
