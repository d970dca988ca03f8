"""Random keys from the whole bindings table, pressed into the real app on the real engine over a
tiny model, with fixed seeds: after every key the app still runs; every few keys, once it has
settled, the prompt on screen is the engine's tokens and every branch is shown or was noticed."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import unicodedata

import pytest
from textual import events
from textual.keys import _get_unicode_name_from_key

from fake_engine import make_settings, settle
from token_explorer.engine import open_engine
from token_explorer.tui import make_app
from token_explorer.tui.bindings import COMMANDS, keys_of
from token_explorer.tui.widgets.prompt import PromptView

pytestmark = pytest.mark.anyio

SEEDS = (1, 2, 3)
KEYS_PER_SEED = 800
CHECK_EVERY = 20
NOT_PRESSED = {"quit"}  # ends the run; tested on its own
UNSENDABLE = {"ctrl+0", "ctrl+dollar_sign"}  # no terminal sends them; pilot cannot either


@pytest.fixture
def anyio_backend():
    return "asyncio"


def key_pool() -> list[str]:
    """Every key of every command but quit, plus the keys a modal screen (help, browser) reads."""
    keys = [key for c in COMMANDS if c.id not in NOT_PRESSED for key in keys_of(c, {})]
    return [k for k in keys if k not in UNSENDABLE] + ["enter", "escape"]


async def press(app, key: str) -> None:
    """Send one key as the terminal driver would, and let the app take it, without waiting for
    the workers to go idle (keys arrive faster than the model steps, as in a paste over SSH)."""
    try:
        char = unicodedata.lookup(_get_unicode_name_from_key(key))
    except KeyError:
        char = key if len(key) == 1 else None
    event = events.Key(key, char)
    event.set_sender(app)
    app._driver.send_message(event)
    await asyncio.sleep(0.001)


def error_notices(app) -> int:
    return sum(1 for n in app._notifications if n.severity == "error")


async def check_settled(pilot, engine, errors_before: int) -> None:
    """Once idle: the shown prompt is the engine's tokens, and the branch shown is either drawn
    from a frame of exactly its tokens or was reported by an error notice."""
    app = pilot.app
    await settle(pilot, rounds=2000)  # heavy views on a loaded CI machine can take a while
    while app.screen is not app.screen_stack[0]:  # close the help screen or the prompt browser
        await pilot.press("escape")
        await settle(pilot, rounds=2000)
    vocab = engine.info.vocab_size
    for branch in app.branches:
        assert branch.tokens and all(0 <= t < vocab for t in branch.tokens)
    branch = app.branch
    shown = branch.current is not None and branch.current.tokens == branch.tokens
    if shown:
        assert engine.snapshot().tokens == branch.tokens
        assert list(app.query_one(PromptView).texts) == engine.token_texts(list(branch.tokens))
    else:
        assert error_notices(app) > errors_before, "a branch neither shown nor noticed"


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_keys_over_the_whole_bindings_table(tmp_path, tiny_dirs, seed):
    settings = make_settings(tmp_path / "prompts", max_prompts=4)
    settings = dataclasses.replace(settings, engine=dataclasses.replace(settings.engine, ig_steps=4))
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30, settings=settings)
    app = make_app(settings, lambda _progress: engine, initial_text="Once upon a time")
    rng = random.Random(seed)
    pool = key_pool()
    pressed, branch_counts, lengths, views = 0, set(), set(), set()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, rounds=2000)
        errors = error_notices(app)
        while pressed < KEYS_PER_SEED:
            await press(app, rng.choice(pool))
            pressed += 1
            assert app.is_running and app.return_code is None, f"the app stopped after key {pressed}"
            if pressed % CHECK_EVERY == 0:
                await check_settled(pilot, engine, errors)
                errors = error_notices(app)
                branch_counts.add(len(app.branches))
                lengths.add(len(app.branch.tokens))
                views.add(app.view_id)
        await check_settled(pilot, engine, errors)
    # the keys reached the app: branches came and went, prompts grew and shrank, views changed
    assert len(branch_counts) > 1 and len(lengths) > 3 and len(views) > 2, (branch_counts, lengths, views)
