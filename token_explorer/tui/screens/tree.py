"""The branch tree as a list, like a file picker: each node's tokens, its probability under the model
and its child count; enter opens a node, x removes its subtree, u brings the last removal back."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from token_explorer.protocol import EngineLike
from token_explorer.tokens import visible
from token_explorer.tree import Tree

from ..jobs import one_line

MAX_INDENT = 16  # levels drawn as indentation; deeper ones say their level


@dataclass(frozen=True)
class TreeRow:
    """One node as the tree screen lists it (plain data; the screen formats it)."""

    node: int
    level: int
    tokens: tuple[int, ...]
    logprob: float | None  # ln p of the node's tokens given their prefix; None: not computed
    children: int
    on_path: bool  # the node is on the current branch's path


def tree_rows(tree: Tree, current: Sequence[int]) -> list[TreeRow]:
    """Every node, depth first, with what the screen shows about it."""
    here = tree.locate(current)
    on_path: set[int] = set()
    n = here
    while n is not None:
        on_path.add(n)
        n = tree.parent(n)
    return [TreeRow(nid, level, tuple(tree.nodes[nid].segment), tree.logprob(nid), len(tree.nodes[nid].children),
                    nid in on_path) for nid, level in tree.walk()]


def row_text(row: TreeRow, text: str | None, width: int) -> Text:
    """One line of ``width`` cells: indentation, a mark on the current path, p, the token and child
    counts, then the tokens (cut with an ellipsis)."""
    line = Text(no_wrap=True, overflow="ellipsis")
    indent = "  " * min(row.level, MAX_INDENT)
    if row.level > MAX_INDENT:
        indent += f"[{row.level}] "
    line.append(indent)
    line.append("● " if row.on_path else "○ ", Style(color="yellow") if row.on_path else Style(dim=True))
    if row.logprob is None:
        line.append("p —      ", Style(dim=True))
    else:
        line.append(f"p {math.exp(row.logprob):<7.2g}".ljust(9), Style(bold=True))
    kids = f"{row.children}▸" if row.children else "  "
    line.append(f"{len(row.tokens):>4} tok {kids:>3} ", Style(dim=True))
    line.append(visible(text) if text is not None else "…", Style(bold=row.on_path))
    line.truncate(max(width, 10), overflow="ellipsis")
    return line


class TreeScreen(ModalScreen[tuple[int, ...] | None]):
    """The whole tree; dismisses with the path of the node to open, or None."""

    BINDINGS = [
        Binding("escape,q,t", "close", "close", show=False),
        Binding("x,delete", "remove", "remove the subtree", show=False),
        Binding("u", "undo", "bring the last removed subtree back", show=False),
    ]

    DEFAULT_CSS = """
    TreeScreen { align: center middle; }
    TreeScreen > Vertical { width: 100%; height: 100%; border: round $primary; background: $surface; }
    TreeScreen OptionList { height: 1fr; }
    TreeScreen #tree-status { height: 1; }
    """

    def __init__(self, tree: Tree, current: Sequence[int], engine: EngineLike,
                 remove: Callable[[int], str], undo: Callable[[], str]) -> None:
        super().__init__()
        self.branch_tree = tree
        self.current = tuple(current)
        self.engine = engine
        self._remove = remove
        self._undo = undo
        self.rows: list[TreeRow] = []
        self.texts: dict[tuple[int, ...], str] = {}  # token ids -> their text

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = "branch tree: enter opens · x removes the subtree · u undoes · esc closes"
        with box:
            yield Static(Text("reading…"), id="tree-status")
            yield OptionList(id="tree-list")

    def on_mount(self) -> None:
        self.reload()

    def reload(self, highlight: int | None = None) -> None:
        """List the tree as it is now; token texts not known yet are read on a worker."""
        self.rows = tree_rows(self.branch_tree, self.current)
        self._fill(highlight)
        missing = [r.tokens for r in self.rows if r.tokens not in self.texts]
        if missing:
            self._read_texts(missing, highlight)

    @work(thread=True, exclusive=True, exit_on_error=False, group="tree")
    def _read_texts(self, runs: list[tuple[int, ...]], highlight: int | None) -> None:
        try:
            texts = {run: "".join(self.engine.token_texts(list(run))) for run in runs}
        except Exception as e:  # noqa: BLE001 - shown to the user as a notice
            self.app.call_from_thread(self.app.notify, one_line(e), severity="error", markup=False)
            return
        self.app.call_from_thread(self._texts_read, texts, highlight)

    def _texts_read(self, texts: dict[tuple[int, ...], str], highlight: int | None) -> None:
        self.texts.update(texts)
        self._fill(highlight)

    def _fill(self, highlight: int | None) -> None:
        options = self.query_one(OptionList)
        keep = options.highlighted
        if highlight is None and keep is not None and keep < len(self.rows):
            highlight = self.rows[keep].node
        options.clear_options()
        width = (options.size.width or self.app.size.width - 4) - 2  # less the scrollbar
        options.add_options([Option(row_text(r, self.texts.get(r.tokens), width), id=str(r.node)) for r in self.rows])
        here = self.branch_tree.locate(self.current)
        target = highlight if highlight is not None else here
        index = next((i for i, r in enumerate(self.rows) if r.node == target), 0)
        if self.rows:
            options.highlighted = index
        computed = sum(1 for r in self.rows if r.logprob is not None)
        status = (f"{len(self.rows)} nodes ({len(self.rows) - computed} with tokens never run: p —) · "
                  "p: probability of a node's tokens given their prefix")
        self.query_one("#tree-status", Static).update(Text(status, no_wrap=True, overflow="ellipsis"))
        options.focus()

    def _highlighted(self) -> TreeRow | None:
        index = self.query_one(OptionList).highlighted
        return self.rows[index] if index is not None and index < len(self.rows) else None

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if self.app.screen is self and event.option_index < len(self.rows):  # not a second queued enter
            self.dismiss(self.branch_tree.path(self.rows[event.option_index].node))

    def action_remove(self) -> None:
        row = self._highlighted()
        if row is None:
            return
        parent = self.branch_tree.parent(row.node)
        self.app.notify(self._remove(row.node), markup=False)
        self.current = self.app.branch.tokens
        self.reload(highlight=parent if parent != Tree.ROOT else None)

    def action_undo(self) -> None:
        self.app.notify(self._undo(), markup=False)
        self.current = self.app.branch.tokens
        self.reload()

    def action_close(self) -> None:
        if self.app.screen is self:
            self.dismiss(None)
