"""``token-explorer trace``: generate headless with sampling controls and record every step.

Per step: the raw and processed next-token distributions (adaptive top-k and statistics), and on
request the logit lens, attention statistics, activations and direct logit attribution; written as
``trace.json`` (Token-Heatmap trace schema v2), ``trace.csv``, ``generated.txt``, sidecars and plots.
"""
