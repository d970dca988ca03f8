"""Pure pieces of the TUI: prompt wrap, colour scales, words, LRU, views, the bindings table."""

import math

import numpy as np
import pytest
from rich.style import Style
from textual.binding import Binding

from fake_engine import MARKUP, FakeEngine
from token_explorer.tui.bindings import BINDING_IDS, COMMANDS, keys_of, textual_bindings, unknown_ids
from token_explorer.tui.colors import UNAVAILABLE, Scale, VIRIDIS
from token_explorer.tui.render import legend, light_colouring
from token_explorer.tui.state import LRU, begins_word, next_word, prev_word
from token_explorer.tui.wrap import Wrap
from token_explorer.tui.views import VIEWS, cycle, unavailable_reason, view_by_id


def _lines(texts, width):
    wrap = Wrap(width)
    wrap.sync(texts)
    return wrap, ["".join(piece for _, piece in line) for line in wrap.lines]


def test_wrap_shows_newlines_and_breaks_the_line():
    wrap, lines = _lines(["a", "b\n", "c"], 40)
    assert lines == ["ab↵", "c"]
    assert wrap.first_line == [0, 0, 1]


def test_wrap_breaks_at_token_boundaries_and_reports_the_token_lines():
    wrap, lines = _lines(["hello", " world", " again", " and", " more"], 12)
    assert lines == ["hello world", " again and", " more"]
    assert wrap.line_of(4) == 2 and wrap.line_of(2) == 1
    assert all(len(x) <= 12 for x in lines)


def test_wrap_splits_a_token_longer_than_the_line():
    wrap, lines = _lines(["x" * 25, "y"], 10)
    assert [len(x) for x in lines] == [10, 10, 6]
    assert wrap.line_of(1) == 2 and list(wrap.lines_of(0)) == [0, 1, 2]


def test_wrap_after_steps_equals_a_fresh_wrap():
    texts = ["hello", " world\n", " again", " and", "x" * 30, " more"]
    wrap = Wrap(12)
    for n in (2, 5, 3, 6, 1, 6):
        wrap.sync(texts[:n])
    assert wrap.lines == _lines(texts, 12)[0].lines


def test_wrap_never_parses_markup_and_hides_control_characters():
    _, lines = _lines(["[bold]x[/]", " [/]", "\x1b[31m", "\t"], 80)
    assert lines == ["[bold]x[/] [/]<0x1B>[31m⇥"]


def test_scale_draws_none_and_nan_as_unavailable_but_not_zero():
    scale = Scale(0.0, 1.0, "", VIRIDIS)
    assert scale.style(None) == UNAVAILABLE
    assert scale.style(math.nan) == UNAVAILABLE
    assert scale.style(0.0) != UNAVAILABLE
    assert scale.style(0.0).bgcolor is not None


def _snapshot(text="Once upon a time, there was a [x]"):
    engine = FakeEngine()
    return engine, engine.set_tokens(engine.tokenize(text))


def test_probability_view_colours_by_token_prob_with_position_zero_unavailable():
    engine, snap = _snapshot()
    colouring = light_colouring(view_by_id("probability"), snap, engine.info)
    assert colouring.styles[0] == UNAVAILABLE
    assert colouring.scale.lo == 0.0 and colouring.scale.hi == 1.0
    # higher probability -> bluer (the red->blue scale), so blue minus red rises with p
    pairs = sorted((p.token_prob, colouring.styles[i].bgcolor.get_truecolor()) for i, p in enumerate(snap.positions) if i)
    lo_rgb, hi_rgb = pairs[0][1], pairs[-1][1]
    assert hi_rgb.blue - hi_rgb.red > lo_rgb.blue - lo_rgb.red


def test_entropy_scale_is_absolute_in_bits():
    engine, snap = _snapshot()
    colouring = light_colouring(view_by_id("entropy"), snap, engine.info)
    assert colouring.scale.unit == "bits"
    assert colouring.scale.hi == pytest.approx(math.log2(engine.info.vocab_size))
    assert "next-token distribution" in colouring.caption
    assert all(s != UNAVAILABLE for s in colouring.styles)  # defined at every position


def test_zscore_scale_is_symmetric_and_energy_names_temperature():
    engine, snap = _snapshot()
    z = light_colouring(view_by_id("zscore"), snap, engine.info)
    zs = np.abs([p.token_z for p in snap.positions if p.token_z is not None])
    bound = max(4.0, float(np.percentile(zs, 98)))  # at least ±4σ, wider when most tokens sit beyond it
    assert z.scale.lo == pytest.approx(-bound) and z.scale.hi == pytest.approx(bound)
    energy = light_colouring(view_by_id("energy"), snap, engine.info)
    assert "T=1" in energy.caption and energy.scale.unit == "nats"
    values = [p.energy for p in snap.positions]
    assert energy.scale.lo == pytest.approx(np.percentile(values, 2))
    assert energy.scale.hi == pytest.approx(np.percentile(values, 98))


def test_legend_states_range_and_unavailable():
    engine, snap = _snapshot()
    text = legend("probability", light_colouring(view_by_id("probability"), snap, engine.info), 100).plain
    assert "given its prefix" in text and "unavailable" in text and "no prefix" in text
    assert text.split("\n")[1].startswith("0 ")


def test_words_begin_after_whitespace_or_newline():
    texts = ["<s>", "Once", " upon", " a", "\n", "time", "ly"]
    assert [i for i in range(len(texts)) if begins_word(texts, i)] == [0, 2, 3, 4, 5]
    assert next_word(texts, 0) == 2
    assert next_word(texts, 5) == 6  # no later word: the last token
    assert prev_word(texts, 5) == 4
    assert prev_word(texts, 2) == 0


def test_lru_forgets_least_recently_used():
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1
    lru.put("c", 3)
    assert "b" not in lru and "a" in lru and "c" in lru and len(lru) == 2


def test_cycling_skips_views_the_engine_does_not_offer():
    analyses = {"similarity": None, "attention": "no weights"}
    order, view = [], "plain"
    for _ in range(len(VIEWS)):
        view = cycle(view, analyses, 1)
        order.append(view)
    assert order[:6] == ["probability", "entropy", "energy", "zscore", "similarity", "plain"]
    assert cycle("plain", analyses, -1) == "similarity"
    assert unavailable_reason(view_by_id("attention"), analyses) == "no weights"
    assert "does not offer" in unavailable_reason(view_by_id("lens"), analyses)


# ---------------------------------------------------------------- the bindings table

UNSENDABLE = {"ctrl+b", "ctrl+0", "ctrl+dollar_sign", "ctrl+p"}


def test_every_command_has_a_key_that_works_over_ssh_in_tmux():
    for command in COMMANDS:
        keys = keys_of(command, {})
        assert [k for k in keys if k not in UNSENDABLE], command.id


def test_cursor_commands_have_plain_keys():
    for command in COMMANDS:
        if command.group == "cursor":
            assert any("ctrl+" not in k for k in keys_of(command, {})), command.id


def test_no_key_is_bound_twice_and_ids_are_unique():
    keys = [k for c in COMMANDS for k in keys_of(c, {})]
    assert len(keys) == len(set(keys))
    assert len(BINDING_IDS) == len(COMMANDS)


def test_textual_bindings_carry_ids_and_footer_flags():
    bindings = textual_bindings()
    assert [b.id for b in bindings] == [c.id for c in COMMANDS]
    assert {b.id for b in bindings if b.show} == {"append", "pop", "branch_copy", "view_next", "help", "quit"}
    assert all(isinstance(b, Binding) for b in bindings)


def test_unknown_keymap_ids_are_named():
    assert unknown_ids({"append": "n", "apend": "m"}) == ["apend"]


def test_markup_token_text_is_a_real_token_of_the_fake():
    engine = FakeEngine()
    assert engine.token_texts([MARKUP]) == ["[bold]x[/]"]
