"""SVG snapshots of each light view, a heavy view and the help screen (fake engine, 100x30), and of
the main, heavy-view and help screens at 80x24 and 200x50 (keyboard-scrolled, resized and back)."""

import pytest

from fake_engine import BOS, MARKUP, FakeEngine, make_settings, settle
from token_explorer.tui import make_app

SIZE = (100, 30)
TOKENS = [BOS, *b"Once upon a time, there was a little fox.\nIt said: ", MARKUP, *b" and ran"]


def _app(tmp_path, view):
    return make_app(make_settings(tmp_path / "prompts"), lambda progress: FakeEngine(),
                    initial_tokens=TOKENS, start_view=view)


async def _settled(pilot):
    await settle(pilot)


async def _cursor_back(pilot):
    await settle(pilot)
    await pilot.press("left_curly_bracket", "left_curly_bracket")
    await settle(pilot)


@pytest.mark.parametrize("view", ["plain", "probability", "entropy", "energy", "zscore"])
def test_light_view(snap_compare, tmp_path, view):
    assert snap_compare(_app(tmp_path, view), terminal_size=SIZE, run_before=_settled)


def test_heavy_view_with_tables_and_grid(snap_compare, tmp_path):
    assert snap_compare(_app(tmp_path, "similarity"), terminal_size=SIZE, run_before=_cursor_back)


def test_z_column(snap_compare, tmp_path):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("z", "j", "j")
        await settle(pilot)

    assert snap_compare(_app(tmp_path, "probability"), terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare, tmp_path):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(_app(tmp_path, "plain"), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_main_screen_small_and_large(snap_compare, tmp_path, size):
    assert snap_compare(_app(tmp_path, "probability"), terminal_size=size, run_before=_settled)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_heavy_view_panel_focused(snap_compare, tmp_path, size):
    async def run_before(pilot):
        await _cursor_back(pilot)
        await pilot.press("tab", "tab", "pagedown")
        await pilot.pause()

    assert snap_compare(_app(tmp_path, "similarity"), terminal_size=size, run_before=run_before)


def test_help_screen_small_scrolled_to_the_end(snap_compare, tmp_path):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        await pilot.press("end")
        await pilot.pause()

    assert snap_compare(_app(tmp_path, "plain"), terminal_size=(80, 24), run_before=run_before)


def test_resized_large_and_back(snap_compare, tmp_path):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.resize_terminal(200, 50)
        await settle(pilot)
        await pilot.resize_terminal(80, 24)
        await settle(pilot)

    assert snap_compare(_app(tmp_path, "entropy"), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_tree_screen_after_a_fork(snap_compare, tmp_path, size):
    """Three appends, the cursor back two tokens, a fork with the second alternative, the tree."""
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("l", "l", "l")
        await settle(pilot)
        await pilot.press("left_square_bracket", "left_square_bracket")
        await settle(pilot)
        await pilot.press("j")  # the row below the token there
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)

    assert snap_compare(_app(tmp_path, "plain"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_alternatives_at_the_cursor(snap_compare, tmp_path, size):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("left_square_bracket", "left_square_bracket", "left_square_bracket")
        await settle(pilot)

    assert snap_compare(_app(tmp_path, "probability"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_compare_screen_after_a_fork(snap_compare, tmp_path, size):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("l", "l", "l", "left_square_bracket", "left_square_bracket")
        await settle(pilot)
        await pilot.press("j", "enter", "l", "l")
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)

    assert snap_compare(_app(tmp_path, "plain"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_type_text_input(snap_compare, tmp_path, size):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("left_square_bracket", "left_square_bracket", "i", "h", "i")
        await pilot.pause()

    assert snap_compare(_app(tmp_path, "plain"), terminal_size=size, run_before=run_before)
