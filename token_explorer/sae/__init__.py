"""Sparse dictionaries (SAEs and transcoders): ``[[sae]]`` entries, weight layouts, encoders and a
small trainer. The view itself is ``token_explorer.analyses.sae``."""
