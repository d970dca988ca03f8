"""The next-token candidates table: the model's raw distribution after the last token."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

from ..render import candidate_cells
from ..state import Frame


class Candidates(DataTable, can_focus=False):
    """Rank, token, probability, logit (and z); the highlighted row is what ``append`` adds.

    Not focusable: its keys come from the app's one bindings table.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._shape: tuple[int, bool, bool] | None = None  # (token column width, z shown, processed shown)

    def show(self, frame: Frame, rows: int, show_z: bool, width: int, selected: int = 0, fork_at: int | None = None,
             fork_texts: Sequence[str] = (), show_processed: bool = False) -> None:
        """Fill the table from ``frame`` to fit ``width`` cells, with row ``selected`` highlighted: the
        next-token candidates, or with ``fork_at`` the alternatives to the token there (from the
        distribution after the position before it; ``fork_texts`` their texts), that token marked.
        ``show_processed`` adds the sampler's processed probability of the next-token candidates."""
        fixed = 3 + 6 + 7 + (6 if show_z else 0) + (6 if show_processed else 0)
        columns = 4 + show_z + show_processed
        token_width = max(4, width - fixed - 2 * columns - 1)
        if self._shape != (token_width, show_z, show_processed):
            self.clear(columns=True)
            self.add_column("#", width=3, key="rank")
            self.add_column("token", width=token_width, key="token")
            self.add_column("prob", width=6, key="prob")
            if show_processed:
                self.add_column("proc", width=6, key="proc")
            self.add_column("logit", width=7, key="logit")
            if show_z:
                self.add_column("z", width=6, key="z")
            self._shape = (token_width, show_z, show_processed)
        else:
            self.clear()
        positions = frame.snapshot.positions
        if fork_at is None:
            table = candidate_cells(positions[-1], frame.cand_texts, rows, show_z, processed=frame.processed,
                                    show_processed=show_processed)
        else:  # the processed distribution is only known for the next token
            actual = positions[fork_at]
            table = candidate_cells(positions[fork_at - 1], fork_texts, rows, show_z, actual, actual.text,
                                    show_processed=show_processed)
        for cells in table:
            self.add_row(*cells)
        self.move_cursor(row=min(max(selected, 0), max(self.row_count - 1, 0)), animate=False, scroll=True)

    @property
    def selected(self) -> int:
        """The highlighted row (its rank - 1)."""
        return max(self.cursor_row, 0)
