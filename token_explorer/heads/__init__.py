"""The head lab: per-head attention metrics over a corpus and the headvis ``data/`` tree.

``token-explorer heads`` streams a corpus through the model once, reading each studied head's
attention from the queries, keys and values captured over the forward (``attention``), adds up
its metrics (``metrics``), its attention-distance histogram (``histograms``), the tokens at its
strongest rows (``triples``, ``tally``), a weighted sample of high-attention points for the PCA
clouds (``pca``) and the per-sequence maxima its deciles are cut from (``deciles``); the
repeated-random-tokens induction score comes from ``induction``. ``scan`` runs the pass, ``tree``
writes the files and ``schema`` describes them.
"""
