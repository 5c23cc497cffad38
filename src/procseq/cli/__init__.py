"""The ``procseq`` command line: generate | adapt | recraft | continue | train | data | eval | samples | bench | adapter | init-tiny | app.

User errors (bad input, missing files) print one line on stderr and exit with status 2; output
folders are written to a temporary sibling and renamed into place, so a failed command leaves
nothing half-written behind. One module per command family; :mod:`procseq.cli.common` holds the
root group and the shared helpers.
"""

from procseq.cli import adapt, adapter, app, data, evaluate, generate, plan, recraft, train, tutorial  # noqa: F401  (registers the commands)
from procseq.cli.common import USER_ERRORS, ProcseqGroup, atomic_output_dir, check_output_free, main, parse_mix

__all__ = ["USER_ERRORS", "ProcseqGroup", "atomic_output_dir", "check_output_free", "main", "parse_mix"]
