"""A tensor that grows along one dimension with amortised O(1) appends and O(1) truncation."""

from __future__ import annotations

import torch


class GrowBuffer:
    """Rows appended along ``dim``; ``view()`` is the filled part, without copying."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.data: torch.Tensor | None = None
        self.length = 0
        self._room = 0  # rows the next growth makes room for at least (see reserve)

    def reserve(self, rows: int) -> None:
        """Make the next growth room for exactly ``rows`` rows in all when that is more than it
        needs, instead of doubling: a long prefill then holds its captures once, without slack."""
        self._room = rows

    def extend(self, rows: torch.Tensor) -> None:
        """Append ``rows`` (same shape as the buffer except along ``dim``)."""
        need = self.length + rows.shape[self.dim]
        if self.data is None or need > self.data.shape[self.dim]:
            shape = list(rows.shape)
            doubled = 2 * (0 if self.data is None else self.data.shape[self.dim])
            shape[self.dim] = max(need, self._room) if self._room >= need else max(need, doubled, 64)
            self._room = 0
            grown = rows.new_empty(shape)
            if self.data is not None and self.length:
                grown.narrow(self.dim, 0, self.length).copy_(self.view())
            self.data = grown
        self.data.narrow(self.dim, self.length, rows.shape[self.dim]).copy_(rows)
        self.length = need

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` rows."""
        assert 0 <= length <= self.length, f"cannot truncate {self.length} rows to {length}"
        self.length = length
        if length == 0:
            self.data = None

    def view(self) -> torch.Tensor:
        """The filled rows."""
        assert self.data is not None, "empty buffer"
        return self.data.narrow(self.dim, 0, self.length)
