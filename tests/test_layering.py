"""The seams: the engine and analyses never import Textual."""

from __future__ import annotations

import subprocess
import sys


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_engine_and_analyses_never_import_textual():
    for module in ("token_explorer.engine", "token_explorer.analyses.lens", "token_explorer.peek"):
        loaded = imported_after(module)
        assert not any(name == "textual" or name.startswith("textual.") for name in loaded), module
