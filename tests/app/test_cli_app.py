"""`procseq app`: without gradio a one-line error; with it, the app module loads from the repository."""

from __future__ import annotations

import importlib.util

from click.testing import CliRunner

from procseq.cli import main
from procseq.cli.app import APP_FILE, load_app_module


def test_procseq_app_needs_gradio_or_loads_the_app() -> None:
    assert APP_FILE.is_file()
    if importlib.util.find_spec("gradio") is None:
        result = CliRunner().invoke(main, ["app"])
        assert result.exit_code == 2 and "pip install -e '.[app]'" in result.output
    else:
        module = load_app_module()
        assert callable(module.launch) and module.AppLimits().max_queue == 8
    bad = CliRunner().invoke(main, ["app", "--max-queue", "0"])
    assert bad.exit_code == 2 and "must be positive" in bad.output
