"""Checking a ``[keymap]`` against the bindings table before the explorer starts."""

from __future__ import annotations

from collections.abc import Mapping

from textual.keys import Keys, _character_to_key, key_to_character

from token_explorer.errors import UserError

from .bindings import BINDING_IDS, COMMANDS

MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
_NAMED = frozenset(k.value.rpartition("+")[2] for k in Keys) | {"space", "tab", "enter", "escape", "backspace"}


def key_name(key: str) -> str | None:
    """The Textual name of one key (``"?"`` -> ``question_mark``), or None if it names no key."""
    *mods, base = key.split("+")
    if not base or any(m not in MODIFIERS for m in mods):
        return None
    if len(base) == 1:
        if not base.isprintable():
            return None
        base = _character_to_key(base)
    elif base not in _NAMED:
        char = key_to_character(base)
        if char is None or not char.isprintable():
            return None
    return "+".join([*mods, base])


def check_keymap(keymap: Mapping[str, str], source: str) -> None:
    """UserError naming the binding ids when ``keymap`` (binding id -> ``"key,key"``) has an unknown
    id, an empty or unknown key name, a key bound to two commands, or a command left without a key."""
    owner: dict[str, str] = {}
    for command in COMMANDS:
        keys = keymap.get(command.id, command.keys)
        names = []
        for key in keys.split(","):
            key = key.strip()
            if not key:
                raise UserError(f"{source}: [keymap] {command.id} has an empty key name in {keys!r}")
            name = key_name(key)
            if name is None:
                raise UserError(f"{source}: [keymap] {command.id}: {key!r} is not a key name "
                                "(e.g. l, right, ctrl+r, f1, question_mark)")
            names.append(name)
        for name in dict.fromkeys(names):
            if name in owner:
                raise UserError(f"{source}: [keymap] key {name!r} is bound to both {owner[name]} and {command.id}; "
                                "give each command its own keys")
            owner[name] = command.id
    unknown = sorted(set(keymap) - BINDING_IDS)
    if unknown:
        raise UserError(f"{source}: [keymap] has unknown binding id '{unknown[0]}' (the ids are on the help screen, ?)")
