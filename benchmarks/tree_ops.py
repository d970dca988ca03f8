"""What the branch tree adds to a key, against a bare KV-cached decode step of the bundled model.

At 1024 tokens, as medians:
  decode      a bare single-token forward over a DynamicCache (benchmarks/baseline.py)
  note_step   the explorer's bookkeeping when a step lands: the new path added to the tree and
              visited, and the frame's probabilities recorded (Tree.add + Tree.set_probs)
  move        one tree move's target (to_parent, to_child, to_sibling) in a tree of 200 forks
  rows        the tree screen's rows for that tree (tree_rows: every node, its p and children)
and prints the ratios to decode.

Run: ./dev.sh bench tree_ops   (or .venv/bin/python benchmarks/tree_ops.py)
"""

from __future__ import annotations

import random

import torch
from baseline import bare_model, decode_ms, median_ms, prompt_ids
from transformers import AutoTokenizer

from token_explorer.model.loading import bundled_gguf, convert_gguf
from token_explorer.tree import Tree
from token_explorer.tui.screens.tree import tree_rows

N = 1024
FORKS = 200


def main() -> None:
    torch.set_grad_enabled(False)
    tokenizer = AutoTokenizer.from_pretrained(convert_gguf(bundled_gguf()))
    ids = prompt_ids(lambda t: tokenizer(t)["input_ids"], N)
    prompt, token = ids[:N], ids[N]
    bare = bare_model()
    decode = decode_ms(bare, prompt, token, reps=20)

    rng = random.Random(0)
    tree = Tree()
    tree.add(prompt)
    for _ in range(FORKS):  # forks all along the prompt, each a few tokens long
        at = rng.randrange(1, N)
        tree.add(prompt[:at] + [rng.randrange(50_000) for _ in range(rng.randint(1, 8))])
    probs = [None] + [0.5] * N
    grown = prompt + [token]

    def note_step() -> None:
        tree.add(grown)
        tree.set_probs(grown, probs)

    def move() -> None:
        tree.to_parent(grown)
        tree.to_child(prompt[: N // 2])
        tree.to_sibling(grown, 1)

    results = {
        "note_step": median_ms(note_step, 50),
        "move": median_ms(move, 50),
        "rows": median_ms(lambda: tree_rows(tree, grown), 20),
    }
    print(f"decode (bare, {N} tokens): {decode:.2f} ms")
    for name, ms in results.items():
        print(f"{name:10s} {ms:8.3f} ms  {ms / decode:6.3f}x decode")
    print(f"summary at {N} tokens, {len(tree) - 1} nodes: " +
          ", ".join(f"{k} {v / decode:.3f}x" for k, v in results.items()))


if __name__ == "__main__":
    main()
