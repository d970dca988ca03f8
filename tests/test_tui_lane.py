"""The step queue without Textual: bursts kept whole, held keys bounded, selection as if pressed one by one."""

from token_explorer.tui.lane import Lane


def test_a_burst_is_kept_whole():
    lane = Lane()
    for i in range(40):
        assert lane.push("append", 1, 0, at=10.0 + i * 1e-5)
    assert len(lane.steps) == 40 and lane.counts() == (40, 0)


def test_held_key_queues_only_what_fits_the_budget():
    lane = Lane(budget=0.55)
    lane.push("append", 1, 0, at=0.0)
    lane.running = "append"
    lane.next()
    lane.finished("append", 0.1)  # measured: 0.1 s per append
    lane.running = "append"
    accepted = [lane.push("append", 1, 0, at=1.0 + i * 0.033) for i in range(30)]  # auto-repeat spacing
    waiting = len(lane.steps)
    # the running step (0.1 s) plus the waiting ones must be worked off within 0.55 s: 4 wait
    assert waiting == 4 and accepted[:4] == [True] * 4 and not any(accepted[4:])


def test_first_steps_use_a_cautious_estimate_until_measured():
    lane = Lane(budget=0.5)
    lane.push("append", 1, 0, at=0.0)
    lane.next()
    lane.running = "append"
    results = [lane.push("append", 1, 0, at=1 + i * 0.05) for i in range(10)]
    assert sum(results) == 1  # 0.25 s guessed per append: only one may wait


def test_pops_are_cheap_so_more_may_wait():
    lane = Lane(budget=0.5)
    lane.push("pop", 1, 0, at=0.0)
    lane.next()
    lane.finished("pop", 0.002)
    lane.running = "pop"
    results = [lane.push("pop", 1, 0, at=i * 0.03) for i in range(50)]
    assert sum(results) > 50 * 0.5  # nearly all: 2 ms each


def test_selection_follows_the_steps_as_if_pressed_one_by_one():
    lane = Lane()
    lane.push("append", 1, shown_row=2, at=0.0)  # picks the row on screen
    lane.move_selection(1, rows=20)  # j after l: applies to the table l produces
    lane.push("append", 1, shown_row=7, at=1e-6)  # outstanding: the screen's row no longer applies
    lane.push("append", 1, shown_row=7, at=2e-6)
    lane.move_selection(-1, rows=20)  # k at the top row stays there
    lane.move_selection(3, rows=20)
    assert [s.row for s in lane.steps] == [2, 1, 0]
    assert lane.selection == 3  # for the table after the last step
    assert lane.next().row == 2 and lane.next_row() == 1


def test_clear_and_branch_change_drop_steps():
    lane = Lane()
    for i in range(5):
        lane.push("pop", 1, 0, at=i * 1e-6)
    assert lane.clear() == 5 and not lane.steps
    lane.push("append", 1, 0, at=1.0)
    lane.push("append", 2, 0, at=1.0 + 1e-6)  # another branch: the first branch's step is gone
    assert len(lane.steps) == 1 and lane.branch_id == 2
