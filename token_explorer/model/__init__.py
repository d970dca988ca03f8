"""torch + transformers only: loading, the family table, captures and the stepping session."""
