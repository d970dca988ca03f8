"""token_explorer: step through a causal language model's generation and see inside it."""

__version__ = "0.1.0"
