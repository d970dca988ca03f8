"""Pilot tests: every binding pressed, state and screen checked, with the deterministic fake engine."""

import json
import re
import threading
from collections.abc import Sequence

import numpy as np
import pytest
from rich.console import Console
from textual import events

from fake_engine import BOS, MARKUP, FakeEngine, hammer, make_settings, screen_text, settle
from token_explorer.analyses.declare import Spec
from token_explorer.errors import UserError
from token_explorer.prompts import save_prompt
from token_explorer.tui import make_app
from token_explorer.tui.bindings import COMMANDS
from token_explorer.tui.screens.browser import PromptBrowser
from token_explorer.tui.screens.help import HelpScreen
from token_explorer.tui.screens.loading import LoadingScreen
from token_explorer.tui.widgets.candidates import Candidates
from token_explorer.tui.widgets.prompt import PromptView

pytestmark = pytest.mark.anyio

SIZE = (100, 30)


@pytest.fixture
def anyio_backend():
    return "asyncio"

TEXT = "Once upon a time"


def app_with(tmp_path, engine=None, **kwargs):
    engine = engine or FakeEngine()
    settings_kwargs = {k: kwargs.pop(k) for k in ("keymap", "max_prompts", "show_cursor") if k in kwargs}
    app = make_app(make_settings(tmp_path / "prompts", **settings_kwargs), lambda progress: engine,
                   initial_text=kwargs.pop("initial_text", TEXT), **kwargs)
    return app, engine


def expected_next(engine, tokens, rank):
    """The rank-th (0-based) most likely next token, from the fake model's logits directly."""
    return int(np.argsort(-engine.logits(tokens), kind="stable")[rank])


def notices(app):
    return [n.message for n in app._notifications]


def prompt_plain(app):
    return app.query_one(PromptView).rendered.plain


async def test_loads_then_shows_prompt_table_and_status(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.branch.tokens == (BOS, *TEXT.encode())
        text = screen_text(app)
        assert "Once upon a time" in text
        assert "branch 1/1" in text and "17 tokens" in text and "fake-bytes · cpu" in text
        assert "raw softmax" in text
        table = app.query_one(Candidates)
        assert table.row_count == 20
        assert engine.main_thread_calls() == []


async def test_append_adds_the_selected_candidate_and_pop_removes_it(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        await pilot.press("down", "j", "j", "k")  # row 2
        await pilot.press("l")
        await settle(pilot)
        assert app.branch.tokens == (*start, expected_next(engine, start, 2))
        await pilot.press("right")  # selection went back to the top row
        await settle(pilot)
        assert app.branch.tokens[-1] == expected_next(engine, app.branch.tokens[:-1], 0)
        await pilot.press("h")
        await settle(pilot)
        await pilot.press("left")
        await settle(pilot)
        assert app.branch.tokens == start
        assert engine.count("pop") == 2
        assert engine.main_thread_calls() == []


async def test_pop_keeps_the_last_token(tmp_path):
    app, engine = app_with(tmp_path, initial_tokens=[BOS])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.branch.tokens == (BOS,)
        await pilot.press("h")
        await settle(pilot)
        assert app.branch.tokens == (BOS,)
        assert engine.count("pop") == 0
        assert any("at least one token" in n for n in notices(app))


async def test_table_shows_the_model_distribution_and_z_column(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.query_one(Candidates)
        logits = engine.logits(app.branch.tokens)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(np.argmax(probs))
        row = [c.plain for c in table.get_row_at(0)]
        assert row[0] == "1"
        assert float(row[2]) == pytest.approx(probs[best], abs=1e-4)  # shown with 4 decimals
        assert float(row[3]) == pytest.approx(logits[best], abs=1e-2)
        assert len(table.columns) == 4
        await pilot.press("z")
        await settle(pilot)
        assert len(table.columns) == 5
        z = (logits[best] - logits.mean()) / logits.std()
        assert float(table.get_row_at(0)[4].plain) == pytest.approx(z, abs=1e-2)
        assert " z " in screen_text(app)
        await pilot.press("z")
        await settle(pilot)
        assert len(table.columns) == 4


async def test_branches_copy_switch_remove_and_cap(tmp_path):
    app, engine = app_with(tmp_path, max_prompts=2)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        await pilot.press("d")
        await settle(pilot)
        assert len(app.branches) == 2 and app.current == 1
        assert "branch 2/2" in screen_text(app)
        await pilot.press("l")
        await settle(pilot)
        second = app.branch.tokens
        assert len(second) == len(start) + 1
        await pilot.press("d")  # over the cap
        assert len(app.branches) == 2
        assert any("max_prompts" in n for n in notices(app))
        await pilot.press("w")
        await settle(pilot)
        assert app.current == 0 and app.branch.tokens == start
        assert engine.snapshot().tokens == start  # the engine followed the switch
        await pilot.press("s")
        await settle(pilot)
        assert app.current == 1 and engine.snapshot().tokens == second
        await pilot.press("a")
        await settle(pilot)
        assert len(app.branches) == 1 and app.branch.tokens == start
        await pilot.press("a")
        assert len(app.branches) == 1
        assert any("last branch" in n for n in notices(app))
        assert engine.main_thread_calls() == []


async def test_save_writes_token_ids_to_the_prompts_folder(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        files = list((tmp_path / "prompts").glob("*.json"))
        assert len(files) == 1
        record = json.loads(files[0].read_text())
        assert record["token_ids"] == list(app.branch.tokens)
        assert record["model"] == "fake-bytes" and record["model_fingerprint"] == "fake-v1"
        assert record["text"].startswith(TEXT)
        assert any(str(files[0]) in n for n in notices(app))


async def test_reset_returns_to_the_starting_prompt(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        await pilot.press("l")
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        assert len(app.branch.tokens) == len(start) + 2
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert app.branch.tokens == start
        assert engine.snapshot().tokens == start


async def test_views_cycle_forward_and_back_with_their_legends(tmp_path):
    app, _ = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        seen = []
        for _ in range(4):
            await pilot.press("e")
            await settle(pilot)
            seen.append((app.view_id, screen_text(app)))
        assert [v for v, _ in seen] == ["probability", "entropy", "energy", "zscore"]
        assert "given its prefix" in seen[0][1]
        assert "next-token distribution at each position" in seen[1][1]
        assert "T=1" in seen[2][1]
        assert "(logit − mean) / std" in seen[3][1]
        await pilot.press("E")
        await settle(pilot)
        assert app.view_id == "energy"
        await pilot.press("shift+e")
        await settle(pilot)
        assert app.view_id == "entropy"


async def test_cursor_keys_move_and_c_hides_the_cursor(tmp_path):
    app, _ = app_with(tmp_path, initial_text="Once upon\na time")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        # tokens: BOS O n c e ' ' u p o n '\n' a ' ' t i m e   (17, last index 16)
        assert app.branch.cursor == 16
        moves = [
            ("home", 0), ("bracketright", 1), ("right_square_bracket", 2), ("ctrl+j", 3),
            ("left_square_bracket", 2), ("ctrl+k", 1), ("right_curly_bracket", 5), ("ctrl+w", 10),
            ("right_curly_bracket", 11), ("ctrl+w", 12), ("left_curly_bracket", 11), ("ctrl+b", 10),
            ("end", 16), ("0", 0), ("dollar_sign", 16), ("ctrl+0", 0), ("ctrl+dollar_sign", 16),
        ]
        for key, want in moves:
            if key == "bracketright":
                key = "right_square_bracket"
            await pilot.press(key)
            assert app.branch.cursor == want, key
        # the status line and the details line count positions the same way (0-based)
        assert "cursor #16 'e'" in screen_text(app)
        assert "#16 id 101 'e'" in screen_text(app)
        cursor_spans = lambda: [s for s in app.query_one(PromptView).rendered.spans if s.style.reverse]
        assert len(cursor_spans()) == 1
        await pilot.press("c")
        assert cursor_spans() == []
        await pilot.press("c")
        assert len(cursor_spans()) == 1


async def test_help_lists_every_command_from_the_table(tmp_path):
    app, _ = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key in ("question_mark", "f1"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            console = Console(width=120, record=True, color_system=None)
            console.print(app.screen.keys_table())
            console.print(app.screen.views_table())
            out = console.export_text()
            for command in COMMANDS:
                assert command.description in out, command.id
            assert "unavailable: the fake engine has no attention weights" in out
            assert "Cycle the view's mode parameter" in screen_text(app)
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, HelpScreen)


async def test_help_lists_views_declared_only_through_the_analyses(tmp_path):
    """A newcomer's analysis (declared, not in the built-in view list) appears in the help's views."""
    extra = Spec("norms", "token norms", 1, params=(), reads="prompt", at_cursor=False, scale="fitted", unit="")

    class Newcomer(FakeEngine):
        def specs(self):
            return {**super().specs(), "norms": extra}

        def analyses(self):
            return {**super().analyses(), "norms": None}

    app, _ = app_with(tmp_path, engine=Newcomer())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        console = Console(width=120, record=True, color_system=None)
        console.print(app.screen.views_table())
        lines = [line.split() for line in console.export_text().splitlines()]
        assert ["token", "norms", "available"] in lines


async def test_open_loads_saved_ids_or_retokenises_for_another_model(tmp_path):
    app, engine = app_with(tmp_path)
    folder = tmp_path / "prompts"
    same = [BOS, *b"exact ids", MARKUP]  # ids no tokenisation of the text would give
    save_prompt(folder, "whatever text", same, "fake-bytes", "fake-v1", name="a-same")
    save_prompt(folder, "other model text", [5, 6, 7], "other", "other-fp", name="b-other")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, PromptBrowser)
        names = [p.path.name for p in app.screen.prompts]
        await pilot.press(*["down"] * names.index("a-same.json"), "enter")
        await settle(pilot)
        assert len(app.branches) == 2 and app.branch.tokens == tuple(same)
        assert engine.snapshot().tokens == tuple(same)
        await pilot.press("o")
        await settle(pilot)
        names = [p.path.name for p in app.screen.prompts]
        await pilot.press(*["down"] * names.index("b-other.json"), "enter")
        await settle(pilot)
        assert len(app.branches) == 3
        assert app.branch.tokens == (BOS, *b"other model text")
        assert any("re-tokenised" in n for n in notices(app))
        await pilot.press("o")
        await settle(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.branches) == 3
        assert engine.main_thread_calls(("tokenize", "set_tokens", "append", "pop", "analyze")) == []


async def test_keymap_remaps_a_binding_and_unknown_ids_are_named(tmp_path):
    app, engine = app_with(tmp_path, keymap={"append": "n", "no_such_command": "y"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert any("no_such_command" in n for n in notices(app))
        start = app.branch.tokens
        await pilot.press("l")
        await settle(pilot)
        assert app.branch.tokens == start
        await pilot.press("n")
        await settle(pilot)
        assert len(app.branch.tokens) == len(start) + 1


async def test_markup_in_token_text_is_shown_literally(tmp_path):
    app, engine = app_with(tmp_path, initial_tokens=[BOS, *b"see ", MARKUP, *b" and ["])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "see [bold]x[/] and [" in prompt_plain(app)
        assert "see [bold]x[/] and [" in screen_text(app)
        # after "[" the fake makes the markup token the favourite: the table shows it literally
        table = app.query_one(Candidates)
        assert table.get_row_at(0)[1].plain == "[bold]x[/]"
        assert "[bold]x[/]" in screen_text(app).split("next token")[1]


async def burst(app, keys: Sequence[str]) -> None:
    """Keys that arrive together (one terminal read: a paste, a laggy link): posted with no gap."""
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else None))


async def test_holding_append_stops_soon_after_release(tmp_path):
    engine = FakeEngine(delay=0.2)
    app, _ = app_with(tmp_path, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = len(app.branch.tokens)
        await hammer(app, "l", 20)  # key repeat: 20 presses 10 ms apart while the engine is slow
        assert app.busy
        assert "● 1 queued" in screen_text(app) or "● working" in screen_text(app)
        at_release = engine.count("append")
        await settle(pilot)
        appended = engine.count("append")
        # 0.2 s per append: within the 0.5 s budget only the running step and one more may wait
        assert appended - at_release <= 2
        assert 1 <= appended <= 10
        assert len(app.branch.tokens) == start + appended
        assert engine.max_concurrent == 1
        assert engine.main_thread_calls() == []


async def test_a_burst_of_appends_and_pops_counts_every_key(tmp_path):
    engine = FakeEngine(delay=0.02)
    app, _ = app_with(tmp_path, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        await burst(app, ["l"] * 40)
        shown = []  # the pending counts the status line showed while the burst was worked off
        for _ in range(400):
            found = re.search(r"● (\d+) queued", app.query_one("#status").content.plain)
            if found:
                shown.append(int(found.group(1)))
            if len(app.branch.tokens) == len(start) + 40:
                break
            await pilot.pause(0.005)
        assert shown and all(0 < n < 40 for n in shown) and shown == sorted(shown, reverse=True)
        await settle(pilot)
        assert len(app.branch.tokens) == len(start) + 40
        tokens = list(start)
        for _ in range(40):  # each append took the top row of the table before it
            tokens.append(expected_next(engine, tokens, 0))
        assert app.branch.tokens == tuple(tokens)
        await burst(app, ["h"] * 40)
        await settle(pilot)
        assert app.branch.tokens == start
        assert engine.count("pop") == 40 and engine.max_concurrent == 1


async def test_a_burst_equals_the_same_keys_pressed_one_by_one(tmp_path):
    keys = ["j", "l", "l", "j", "j", "l", "h", "k", "l", "down", "right", "j"]
    one_by_one, engine = app_with(tmp_path / "a")
    async with one_by_one.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        expected = (one_by_one.branch.tokens, one_by_one.query_one(Candidates).selected)
    together, _ = app_with(tmp_path / "b", engine=FakeEngine(delay=0.01))
    async with together.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await burst(together, keys)
        await settle(pilot)
        assert (together.branch.tokens, together.query_one(Candidates).selected) == expected
    assert expected[1] == 1 and len(expected[0]) == 17 + 4


async def test_escape_drops_the_queued_steps(tmp_path):
    engine = FakeEngine(delay=0.1)
    app, _ = app_with(tmp_path, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = len(app.branch.tokens)
        await burst(app, ["l"] * 10)
        await pilot.pause(0.05)
        await pilot.press("escape")
        await settle(pilot)
        assert len(app.branch.tokens) - start == engine.count("append") <= 2
        assert any("dropped" in n and "queued step" in n for n in notices(app))


async def test_switching_branch_drops_the_queued_steps_of_the_branch_left(tmp_path):
    engine = FakeEngine(delay=0.1)
    app, _ = app_with(tmp_path, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        await pilot.press("d")
        await settle(pilot)
        await burst(app, ["l"] * 10 + ["w"])
        await settle(pilot)
        assert app.current == 0 and app.branch.tokens == start
        grown = app.branches[1].tokens
        assert len(grown) - len(start) == engine.count("append") <= 2  # the running one landed on branch 2
        assert any("queued steps dropped" in n for n in notices(app))
        assert engine.snapshot().tokens == start


async def test_opening_a_prompt_equal_to_the_branch_shows_it(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert len(app.branches) == 2 and app.branch.tokens == app.branches[0].tokens
        assert app.branch.current is not None
        assert "running the prompt" not in screen_text(app)
        assert "Once upon a time" in prompt_plain(app)
        await pilot.press("l")
        await settle(pilot)
        assert len(app.branch.tokens) == len(app.branches[0].tokens) + 1


async def test_a_removed_branch_comes_back_with_u(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("d", "l")
        await settle(pilot)
        grown = app.branch.tokens
        await pilot.press("a")
        await settle(pilot)
        assert len(app.branches) == 1 and any("u brings it back" in n for n in notices(app))
        await pilot.press("u")
        await settle(pilot)
        assert len(app.branches) == 2 and app.current == 1 and app.branch.tokens == grown
        assert app.branch.current is not None
        await pilot.press("u")
        assert any("no removed branch" in n for n in notices(app))


async def test_selection_made_while_switching_branches_is_kept(tmp_path):
    engine = FakeEngine(delay=0.2)
    app, _ = app_with(tmp_path, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await pilot.press("l")
        await settle(pilot)
        await hammer(app, "w", 1)  # back to branch 1: the engine syncs to it meanwhile
        for _ in range(200):  # the switch's engine job has started (the key may still be queued)
            if app.busy:
                break
            await pilot.pause(0.002)
        assert app.busy
        await hammer(app, "j", 2)  # arrive while the 0.2 s sync runs
        await settle(pilot)
        assert app.query_one(Candidates).selected == 2
        tokens = app.branch.tokens
        await pilot.press("l")
        await settle(pilot)
        assert app.branch.tokens == (*tokens, expected_next(engine, tokens, 2))


async def test_failed_append_is_a_notice_and_keeps_the_branch(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        engine.fail_append = True
        await pilot.press("l")
        await settle(pilot)
        assert app.branch.tokens == start
        assert any("append failed" in n and "[boom]" in n for n in notices(app))
        assert app.is_running
        engine.fail_append = False
        await pilot.press("l")
        await settle(pilot)
        assert len(app.branch.tokens) == len(start) + 1


async def test_loading_shows_progress_then_the_explorer(tmp_path):
    release = threading.Event()
    engine = FakeEngine()

    def factory(progress):
        progress("converting weights", 0.5)
        release.wait(10)
        return engine

    app = make_app(make_settings(tmp_path), factory, initial_text=TEXT)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(50):
            await pilot.pause(0.02)
            if "converting weights" in screen_text(app):
                break
        assert isinstance(app.screen, LoadingScreen)
        assert "converting weights" in screen_text(app)
        await pilot.press("l")  # nothing to step yet: ignored, no crash
        release.set()
        await settle(pilot)
        assert not isinstance(app.screen, LoadingScreen)
        assert app.branch.tokens[0] == BOS


async def test_factory_error_is_one_line_and_q_quits(tmp_path):
    def factory(progress):
        raise UserError("no such model: nowhere/nothing")

    app = make_app(make_settings(tmp_path), factory)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "error: no such model: nowhere/nothing" in text
        assert "Traceback" not in text
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_unexpected_factory_error_names_its_type(tmp_path):
    def factory(progress):
        raise RuntimeError("CUDA out of memory\nmore lines")

    app = make_app(make_settings(tmp_path), factory)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "error: RuntimeError: CUDA out of memory" in text and "more lines" not in text
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running


async def test_heavy_view_runs_on_a_worker_is_cached_and_drawn(tmp_path):
    app, engine = app_with(tmp_path, start_view="similarity")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.view_id == "similarity"
        assert engine.count("analyze") == 1
        text = screen_text(app)
        assert "cosine of each token's state to the cursor's at layer 4" in text
        assert "│ similarity to cursor 1 cosine" in text  # the cursor token is itself
        assert "similarity to cursor, layer × token" in text
        await pilot.press("home")
        await settle(pilot)
        assert engine.count("analyze") == 2
        await pilot.press("end")
        await settle(pilot)
        assert engine.count("analyze") == 2  # from the cache
        await pilot.press("comma")
        await settle(pilot)
        assert app.params["similarity"]["layer"] == 3
        assert "at layer 3" in screen_text(app)
        await pilot.press("full_stop", "full_stop")
        await settle(pilot)
        assert app.params["similarity"]["layer"] == 4  # bounded by the model's layers
        assert engine.count("analyze") == 2  # a layer only selects from the full result
        await pilot.press("m")  # the space changes the computation
        await settle(pilot)
        assert app.params["similarity"]["space"] == "normed"
        assert engine.count("analyze") == 3
        assert engine.main_thread_calls() == []


async def test_mode_key_cycles_the_attribution_method(tmp_path):
    app, engine = app_with(tmp_path, start_view="attribution")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "saliency |∂f/∂e_i|" in screen_text(app)
        await pilot.press("m")
        await settle(pilot)
        assert app.params["attribution"]["method"] == "input_x_gradient"
        assert "input × gradient" in screen_text(app)
        await pilot.press("comma")
        assert any("no layer" in n for n in notices(app))


async def test_stale_view_results_are_dropped(tmp_path):
    engine = FakeEngine(delay=0.5)
    app, _ = app_with(tmp_path, engine=engine, start_view="similarity")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert engine.count("analyze") == 1
        await hammer(app, "left_square_bracket", 6)
        assert "computing" in screen_text(app)
        await settle(pilot)
        # the first move's analysis was running; the four cursor states after it were never asked for
        assert engine.count("analyze") <= 4
        assert app.branch.cursor == 16 - 6
        assert app._view_cache.get(app._view_key()) is not None
        assert "│ similarity to cursor 1 cosine" in screen_text(app)


async def test_layer_view_key_says_why_unavailable(tmp_path):
    app, _ = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("p")
        assert app.view_id == "plain"
        assert any("layer view unavailable" in n and "lens" in n for n in notices(app))


async def test_command_palette_runs_table_commands(tmp_path):
    app, _ = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Next view")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert app.view_id == "probability"


async def test_unknown_start_view_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown view"):
        make_app(make_settings(tmp_path), lambda p: FakeEngine(), start_view="nope")


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
async def test_main_widgets_fit_small_and_large_terminals(tmp_path, size):
    app, _ = app_with(tmp_path)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = app.screen.region
        for selector in ("#status", "#prompt", "#candidates", "#legend", "#detail", "Footer"):
            region = app.query_one(selector).region
            assert region.area > 0, selector
            assert screen.contains_region(region), selector
        text = screen_text(app)
        assert "Once upon a time" in text and "branch 1/1" in text and "append" in text
        assert app.query_one(Candidates).row_count == 20


async def test_long_prompt_keeps_the_cursor_visible(tmp_path):
    long_text = " ".join(f"word{i}" for i in range(250))  # ~1700 tokens
    app, _ = app_with(tmp_path, initial_text=long_text)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        prompt = app.query_one(PromptView)
        assert "word249" in screen_text(app)  # cursor at the end: scrolled down
        await pilot.press("home")
        await pilot.pause()
        assert "word0 " in screen_text(app)
        assert prompt.scroll_y == 0


async def test_a_saved_prompt_given_at_start_opens_its_token_ids(tmp_path):
    from token_explorer.prompts import load_prompt

    same = [BOS, *b"exact ids", MARKUP]
    path = save_prompt(tmp_path / "saved", "whatever text", same, "fake-bytes", "fake-v1", name="same")
    app, _ = app_with(tmp_path, initial_saved=load_prompt(path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.branch.tokens == tuple(same)
    other = save_prompt(tmp_path / "saved", "other text", [5, 6], "other", "other-fp", name="other")
    app, _ = app_with(tmp_path, initial_saved=load_prompt(other))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.branch.tokens == (BOS, *b"other text")
        assert any("re-tokenised" in n and "other.json" in n for n in notices(app))


async def test_resizing_large_and_back_restores_the_layout(tmp_path):
    app, _ = app_with(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        regions = lambda: {s: app.query_one(s).region for s in ("#side", "#prompt", "#legend", "#status")}
        small = regions()
        await pilot.resize_terminal(200, 50)
        await settle(pilot)
        large = regions()
        assert large["#side"].width > small["#side"].width and large["#prompt"].width > small["#prompt"].width
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert regions() == small
        assert "Once upon a time" in prompt_plain(app) and "Once upon a time" in screen_text(app)


async def test_help_scrolls_from_the_keyboard_at_80x24(tmp_path):
    app, _ = app_with(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        scroll = app.screen.query_one("#help-scroll")
        assert scroll.max_scroll_y > 0, "the help is longer than 80x24 shows"
        assert "Cursor to the last token" not in screen_text(app)
        await pilot.press("end")
        await pilot.pause()
        assert scroll.scroll_y == scroll.max_scroll_y
        assert "SAE features" in screen_text(app)  # the last line of the views table
        await pilot.press("home")
        await pilot.pause()
        assert scroll.scroll_y == 0
        seen = set()
        for _ in range(20):  # page by page, every command's line comes into view
            seen |= set(screen_text(app).splitlines())
            await pilot.press("pagedown")
            await pilot.pause()
        text = "\n".join(seen)
        for command in COMMANDS:
            assert command.description[:30] in text, command.id


async def test_tab_focuses_the_view_panel_which_scrolls_both_ways(tmp_path):
    app, _ = app_with(tmp_path, start_view="similarity")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        panel = app.query_one("#panel")
        assert panel.display and (panel.max_scroll_y > 0 or panel.max_scroll_x > 0)
        await pilot.press("tab")
        await pilot.pause()
        if app.focused is not panel:  # the prompt comes first in the focus order
            await pilot.press("tab")
            await pilot.pause()
        assert app.focused is panel
        await pilot.press("end")
        await pilot.pause()
        assert panel.scroll_y == panel.max_scroll_y
        await pilot.press("pageup", "home")
        await pilot.pause()
        assert panel.scroll_y == 0
        if panel.max_scroll_x > 0:
            await pilot.press("right")
            await pilot.pause()
            assert panel.scroll_x > 0
        cursor = app.branch.cursor
        await pilot.press("escape")  # the keys go back to the explorer
        await pilot.pause()
        assert app.focused is None
        await pilot.press("home")
        assert app.branch.cursor == 0 != cursor


async def test_palette_finds_views_and_parameters_and_lists_quit_once(tmp_path):
    from token_explorer.tui.commands import ExplorerCommands

    app, _ = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        provider = ExplorerCommands(app.screen)
        names = [e.name for e in provider._entries()]
        assert "view: entropy" in names and "view: similarity to cursor" in names
        assert "similarity to cursor: next layer" in names
        assert not any("attention" in n for n in names)  # unavailable on the fake engine
        system = [c.title for c in app.get_system_commands(app.screen)]
        assert names.count("Quit") + system.count("Quit") == 1
        keys = {e.name: e.keys for e in provider._entries()}
        append = next(c for c in COMMANDS if c.id == "append")
        assert keys[append.description] == "→, l, ⏎"
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"view: entropy")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert app.view_id == "entropy"
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"similarity to cursor: previous layer")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert app.view_id == "similarity" and app.params["similarity"]["layer"] == 3
