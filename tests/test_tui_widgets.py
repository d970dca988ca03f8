"""The prompt and candidates widgets repaint only part of themselves: whatever sequence of updates
they get, what they draw equals what a fresh widget given the final state draws."""

from __future__ import annotations

import random

import numpy as np
import pytest
from rich.style import Style
from textual.app import App, ComposeResult
from textual.containers import Horizontal

from token_explorer.results import Position, Snapshot
from token_explorer.tui.state import Frame
from token_explorer.tui.widgets.candidates import Candidates
from token_explorer.tui.widgets.prompt import PromptView

pytestmark = pytest.mark.anyio

SIZE = (90, 14)
PALETTE = [Style(bgcolor=c) for c in ("#303446", "#d73027", "#4575b4", "#fee090")]


class Pair(App):
    """Two widgets of one kind side by side: one updated step by step, one given only the end."""

    CSS = "PromptView, Candidates { width: 1fr; height: 1fr; }"

    def __init__(self, kind) -> None:
        super().__init__()
        self.kind = kind

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield self.kind(id="stepped")
            yield self.kind(id="fresh")


def drawn(widget) -> list[str]:
    """Every line the widget draws now: text and style of each segment."""
    return [repr([(s.text, s.style) for s in widget.render_line(y)]) for y in range(widget.size.height)]


async def test_prompt_after_steps_recolourings_and_cursor_moves_draws_as_a_fresh_one():
    rng = random.Random(3)
    words = ["a", " cat", " sat", "\n", " on", " the", " mat", "!", " and", " then", " a long token here"]
    app = Pair(PromptView)
    async with app.run_test(size=SIZE) as pilot:
        stepped = app.query_one("#stepped", PromptView)
        fresh = app.query_one("#fresh", PromptView)
        texts = ["<s>"]
        styles = [PALETTE[0]]
        for step in range(120):
            action = rng.choice(["append", "append", "pop", "recolour_tail", "recolour_one", "same", "cursor"])
            cursor = len(texts) - 1
            if action == "append":
                texts.append(rng.choice(words))
                styles.append(rng.choice(PALETTE))
            elif action == "pop" and len(texts) > 1:
                texts.pop()
                styles.pop()
            elif action == "recolour_tail":
                k = rng.randrange(len(styles))
                styles[k:] = [rng.choice(PALETTE) for _ in styles[k:]]
            elif action == "recolour_one":
                styles[rng.randrange(len(styles))] = rng.choice(PALETTE)
            elif action == "cursor":
                cursor = rng.randrange(len(texts))
            stepped.show(list(texts), tuple(styles), cursor)  # a new tuple each time, as the app builds
            if step % 7 == 0 or step == 119:
                await pilot.pause()
                fresh._strips.clear()
                fresh.show(list(texts), tuple(styles), cursor)
                fresh._wrap.__init__(fresh._wrap.width)  # forget the layout too: wrap from scratch
                fresh._wrap.sync(list(texts))
                fresh._strips.clear()
                fresh.scroll_to(y=stepped.scroll_offset.y, animate=False, immediate=True, force=True)
                await pilot.pause()
                assert drawn(stepped) == drawn(fresh), f"step {step} ({action})"


def frame(seed: int, rows: int = 12) -> Frame:
    """A one-token frame whose next-token table has ``rows`` made-up candidates."""
    rng = np.random.default_rng(seed)
    logits = np.sort(rng.normal(size=rows))[::-1].astype(np.float32)
    probs = (np.exp(logits) / np.exp(logits).sum()).astype(np.float32)
    ids = rng.permutation(1000)[:rows].astype(np.int64)
    position = Position(index=0, token_id=1, text="x", token_prob=None, token_rank=None, token_logit=None,
                        token_z=None, top_ids=ids, top_probs=probs, top_logits=logits, entropy_bits=1.0,
                        energy=1.0, temperature=1.0, logit_mean=float(logits.mean()), logit_std=float(logits.std()) + 1.0)
    texts = tuple(f"t{int(i)}" + " wide" * (int(i) % 4) for i in ids)
    return Frame(Snapshot((1,), (position,)), texts)


async def test_candidates_after_new_frames_and_moves_draw_as_a_fresh_table():
    rng = random.Random(5)
    app = Pair(Candidates)
    async with app.run_test(size=SIZE) as pilot:
        stepped = app.query_one("#stepped", Candidates)
        fresh = app.query_one("#fresh", Candidates)
        shown = (frame(0), False)
        stepped.show(shown[0], 12, False, 38)
        for step in range(60):
            action = rng.choice(["frame", "up", "down", "down", "z", "clear"])
            if action == "frame":
                shown = (frame(step + 1, rng.randint(1, 12)), shown[1])
                stepped.show(shown[0], 12, shown[1], 38, rng.randrange(12))
            elif action == "z":
                shown = (shown[0], not shown[1])
                stepped.show(shown[0], 12, shown[1], 38, stepped.selected)
            elif action == "clear":
                stepped.clear()
                await pilot.pause()
                assert stepped.row_count == 0 and "token" in drawn(stepped)[0]
                stepped.show(shown[0], 12, shown[1], 38)
            elif action == "up":
                stepped.action_cursor_up()
            else:
                stepped.action_cursor_down()
            await pilot.pause()
            fresh.show(shown[0], 12, shown[1], 38, stepped.selected)
            await pilot.pause()
            assert fresh.scroll_offset == stepped.scroll_offset, f"step {step} ({action})"
            assert drawn(stepped) == drawn(fresh), f"step {step} ({action})"
            # the highlighted row is on screen, under the header, and it is the selected one
            y = stepped.selected + 1 - int(stepped.scroll_offset.y)
            assert 1 <= y < stepped.size.height
            assert drawn(stepped)[y].count(repr(f"t{int(shown[0].snapshot.next.top_ids[stepped.selected])}")[1:-1]) == 1
