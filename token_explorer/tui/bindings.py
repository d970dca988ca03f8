"""The one table of user commands: footer, help screen, command palette and keymap come from it.

Every command has a key a terminal can send over SSH inside tmux: ``ctrl+b`` (tmux's prefix),
``ctrl+0`` and ``ctrl+$`` (most terminals never send them) are extras, never the only key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Command:
    """One user command: a binding id, its default keys (Textual key names), and the action."""

    id: str
    keys: str
    description: str
    action: str
    footer: str = ""  # short label shown in the footer; empty: not in the footer
    group: str = ""


COMMANDS: tuple[Command, ...] = (
    Command("table_up", "up,k", "Select the candidate above", "table_up", group="candidates"),
    Command("table_down", "down,j", "Select the candidate below", "table_down", group="candidates"),
    Command("append", "right,l,enter", "Append the selected candidate (cursor inside: fork with it)",
            "append", footer="append", group="stepping"),
    Command("pop", "left,h", "Remove the last token", "pop", footer="pop", group="stepping"),
    Command("drop_pending", "escape", "Drop the queued steps (and leave a focused panel)", "drop_pending", group="stepping"),
    Command("reset", "ctrl+r", "Reset this branch to the starting prompt", "reset", group="stepping"),
    Command("branch_copy", "d", "Copy this prompt into a new branch", "branch_copy", footer="branch", group="branches"),
    Command("branch_remove", "a", "Remove this branch", "branch_remove", group="branches"),
    Command("branch_undo", "u", "Bring back the last removed branch", "branch_undo", group="branches"),
    Command("branch_next", "w", "Next branch", "branch_next", group="branches"),
    Command("branch_prev", "s", "Previous branch", "branch_prev", group="branches"),
    Command("save", "x", "Save this prompt (text and token ids) to the prompts folder", "save", group="files"),
    Command("open", "o", "Open a saved prompt as a new branch", "open", group="files"),
    Command("export", "X,shift+x", "Export the screen: view values, grid, candidates and an SVG screenshot",
            "export", group="files"),
    Command("view_next", "e", "Next view", "view_next", footer="view", group="views"),
    Command("view_prev", "E,shift+e", "Previous view", "view_prev", group="views"),
    Command("lens", "p", "Layer (logit lens) view on/off", "lens", group="views"),
    Command("view_mode", "m", "Cycle the view's mode parameter", "view_mode", group="views"),
    Command("layer_next", "full_stop", "Next layer of the view", "layer_step(1)", group="views"),
    Command("layer_prev", "comma", "Previous layer of the view", "layer_step(-1)", group="views"),
    Command("pick_next", "greater_than_sign", "Next head / feature of the view", "pick_step(1)", group="views"),
    Command("pick_prev", "less_than_sign", "Previous head / feature of the view", "pick_step(-1)", group="views"),
    Command("scale_first", "f", "Leave position 0 out of the colour scale (or put it back)", "toggle_scale_first",
            group="views"),
    Command("zscore", "z", "Show/hide the z-score column", "toggle_z", group="views"),
    Command("processed", "P,shift+p", "Show/hide the sampler's processed probability column",
            "toggle_processed", group="views"),
    Command("cursor_toggle", "c", "Show/hide the cursor", "toggle_cursor", group="cursor"),
    Command("cursor_next", "right_square_bracket,ctrl+j", "Cursor to the next token", "cursor_next", group="cursor"),
    Command("cursor_prev", "left_square_bracket,ctrl+k", "Cursor to the previous token", "cursor_prev", group="cursor"),
    Command("word_next", "right_curly_bracket,ctrl+w", "Cursor to the next word", "word_next", group="cursor"),
    Command("word_prev", "left_curly_bracket,ctrl+b", "Cursor to the previous word", "word_prev", group="cursor"),
    Command("cursor_start", "home,0,ctrl+0", "Cursor to the first token", "cursor_start", group="cursor"),
    Command("cursor_end", "end,dollar_sign,ctrl+dollar_sign", "Cursor to the last token", "cursor_end", group="cursor"),
    Command("sample", "g", "Sample and continue ([sampling]; any key stops)",
            "sample", group="tree"),
    Command("type_text", "i", "Type text after the cursor's token (inside the prompt: a fork)", "type_text", group="tree"),
    Command("tree_parent", "b", "To the parent in the branch tree (where this node forks off)", "tree_parent",
            group="tree"),
    Command("tree_child", "n", "To the child visited last (from inside a node: its end)", "tree_child", group="tree"),
    Command("tree_prev", "left_parenthesis", "To the previous sibling in the branch tree", "tree_sibling(-1)",
            group="tree"),
    Command("tree_next", "right_parenthesis", "To the next sibling in the branch tree", "tree_sibling(1)",
            group="tree"),
    Command("compare", "v", "Compare this branch with the nearest path forking off it",
            "compare", group="tree"),
    Command("tree", "t", "The branch tree: every path visited, opened with enter", "tree", group="tree"),
    Command("session_save", "S,shift+s", "Save the session (branch tree, open branches, cursors)",
            "session_save", group="files"),
    Command("session_open", "O,shift+o", "Open a saved session in place of the open branches", "session_open",
            group="files"),
    Command("focus_next", "tab", "Focus the next panel, to scroll it with the arrow, page and home/end keys",
            "focus_next", group="panels"),
    Command("focus_prev", "shift+tab", "Focus the previous panel", "focus_previous", group="panels"),
    Command("help", "question_mark,f1", "Keys and views", "help", footer="help", group="app"),
    Command("quit", "q,ctrl+q", "Quit", "quit", footer="quit", group="app"),
)
"""Every command, in help-screen order."""

BINDING_IDS: frozenset[str] = frozenset(c.id for c in COMMANDS)
"""The ids a ``[keymap]`` may remap."""

READY_ONLY_EXEMPT = frozenset({"help", "quit"})
"""Commands that work before the engine has loaded."""


def textual_bindings(commands: Iterable[Command] = COMMANDS) -> list[Binding]:
    """The commands as Textual bindings (with ids, so ``App.set_keymap`` remaps them)."""
    return [
        Binding(c.keys, c.action, c.footer or c.description, show=bool(c.footer), tooltip=c.description, id=c.id)
        for c in commands
    ]


def unknown_ids(keymap: Mapping[str, str]) -> list[str]:
    """Binding ids in ``keymap`` that no command has."""
    return [k for k in keymap if k not in BINDING_IDS]


def keys_of(command: Command, keymap: Mapping[str, str]) -> list[str]:
    """The Textual key names that trigger ``command`` under ``keymap`` (``"?"`` becomes ``question_mark``)."""
    keys = keymap.get(command.id, command.keys)
    return [b.key for b in Binding.make_bindings([Binding(keys, command.action)])]

