"""The TUI never imports torch or transformers, directly or through another module."""

import subprocess
import sys


def test_tui_does_not_import_torch_or_transformers():
    code = (
        "import sys\n"
        "import token_explorer.tui, token_explorer.tui.app\n"
        "import token_explorer.tui.screens.browser, token_explorer.tui.screens.help\n"
        "bad = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
