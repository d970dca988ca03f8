"""JSON schemas of the headvis ``data/`` files, written from the contract
(``shared/formats/headvis-data.md``); the tests validate every written file against them."""

from __future__ import annotations

from .metrics import METRICS

_NUMBER = {"type": ["number", "null"]}  # null: a value that could not be computed
_INT = {"type": "integer"}
_PAIRS = {"type": "array", "items": {"type": "array", "items": _INT, "minItems": 2, "maxItems": 2}}
_NUMBERS = {"type": "array", "items": {"type": "number"}}
_BINS = {"type": "object", "required": ["bin_edges", "bin_values"], "additionalProperties": False,
         "properties": {"bin_edges": _NUMBERS, "bin_values": _NUMBERS}}
_TOKENS = {"type": "array", "items": {"type": "object", "required": ["token", "weight"], "additionalProperties": False,
                                      "properties": {"token": {"type": "string"}, "weight": {"type": "number"}}}}
_KEY_LABEL = {"type": "array", "items": {"type": "object", "required": ["key", "label"],
                                         "properties": {"key": {"type": "string"}, "label": {"type": "string"}}}}

CONFIG = {
    "type": "object",
    "required": ["model_name", "heads", "n_layers", "n_heads", "n_intervals", "metrics", "metric_descriptions",
                 "head_data_pattern", "has_umap", "umap_heads"],
    "additionalProperties": False,
    "properties": {
        "model_name": {"type": "string"}, "heads": _PAIRS, "n_layers": _INT, "n_heads": _INT,
        "n_intervals": {"type": "integer", "minimum": 1},
        "metrics": {"type": "array", "items": {"enum": list(METRICS)}},
        "metric_descriptions": {"type": "object", "additionalProperties": {"type": "string"}},
        "head_data_pattern": {"const": "L{layer}H{head}.json"},
        "has_umap": {"type": "boolean"}, "umap_heads": _PAIRS,
        "custom_plots": _KEY_LABEL, "custom_tables": _KEY_LABEL,
        "statistics_display": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["label", "format"],
            "properties": {"label": {"type": "string"}, "format": {"type": "string"}}}},
    },
}

SCATTER = {
    "type": "array",
    "items": {"type": "object", "required": ["layer", "head"], "additionalProperties": False,
              "properties": {"layer": _INT, "head": _INT, **{m: _NUMBER for m in METRICS}}},
}

SEQUENCE = {
    "type": "object",
    "required": ["sequence_id", "interval", "tokens", "attention_indices", "attention_values", "seq_len",
                 "max_activation"],
    "additionalProperties": False,
    "properties": {
        "sequence_id": _INT, "interval": {"type": "integer", "minimum": 1},
        "tokens": {"type": "array", "items": {"type": "string"}},
        "attention_indices": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "attention_values": _NUMBERS, "seq_len": {"type": "integer", "minimum": 1}, "max_activation": {"type": "number"},
    },
}

HEAD = {
    "type": "object",
    "required": ["sequences", "qk_distance_histogram", "top_query_tokens", "top_key_tokens", "histogram", "statistics"],
    "additionalProperties": False,
    "properties": {
        "sequences": {"type": "array", "items": SEQUENCE},
        "qk_distance_histogram": _BINS, "top_query_tokens": _TOKENS, "top_key_tokens": _TOKENS, "histogram": _BINS,
        "statistics": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
    },
}

_AXES = {"type": "object", "required": ["d0", "d1", "d2"], "additionalProperties": False,
         "properties": {f"d{i}": _NUMBERS for i in range(3)}}
UMAP = {
    "type": "object",
    "required": ["seq_idx", "top_q", "top_k", "norms", "pca", "clusters"],
    "additionalProperties": False,  # no "views": only PCA is fitted
    "properties": {
        "seq_idx": {"type": "array", "items": _INT}, "top_q": {"type": "array", "items": _INT},
        "top_k": {"type": "array", "items": _INT}, "norms": _NUMBERS,
        "pca": {"type": "object", "required": ["Q", "K", "O", "V"], "additionalProperties": False,
                "properties": {s: _AXES for s in ("Q", "K", "O", "V")}},
        "clusters": {"type": "array", "maxItems": 0},
    },
}

SEQUENCES = {"type": "object", "propertyNames": {"pattern": "^[0-9]+$"},
             "additionalProperties": {"type": "array", "items": {"type": "string"}}}
EMPTY = {"type": "object", "maxProperties": 0}
