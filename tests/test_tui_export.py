"""The export key (X): the files it writes hold the engine's numbers, strict JSON, a screenshot."""

from __future__ import annotations

import csv
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_engine import FakeEngine, make_settings, screen_text, settle
from token_explorer.engine import open_engine
from token_explorer.tui import make_app

pytestmark = pytest.mark.anyio

LIGHT_FILES = {"values.csv", "values.json", "candidates.csv", "candidates.json", "screenshot.svg", "meta.json"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _no_constants(name: str):
    raise ValueError(f"not strict JSON: {name}")


def strict(path: Path):
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)


async def export(pilot, tmp_path: Path) -> Path:
    """Press X, wait for the writer; the one new export folder."""
    before = set((tmp_path / "exports").glob("*")) if (tmp_path / "exports").exists() else set()
    await pilot.press("X")
    await settle(pilot)
    folders = set((tmp_path / "exports").glob("*")) - before
    assert len(folders) == 1
    return folders.pop()


def check_common(app, folder: Path, files: set[str]) -> tuple[dict, dict]:
    assert {p.name for p in folder.iterdir()} == files  # no leftover temporary files either
    for name in files:
        if name.endswith(".json"):
            strict(folder / name)
    svg = (folder / "screenshot.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<svg") and len(svg) > 1000
    notice = [n.message for n in app._notifications][-1]
    assert str(folder) in notice and all(name in notice for name in files - {"meta.json"})
    values, meta = strict(folder / "values.json"), strict(folder / "meta.json")
    with open(folder / "values.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["token_id"]) for r in rows] == meta["tokens"] == [p["token_id"] for p in values["positions"]]
    for r, p in zip(rows, values["positions"]):  # the CSV holds the same numbers (blank = null)
        assert (r["value"] == "") == (p["value"] is None)
        if p["value"] is not None:
            assert float(r["value"]) == pytest.approx(p["value"], rel=1e-12)
    return values, meta


def check_candidates(folder: Path, logits: np.ndarray, rows: int) -> None:
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float64), -1).numpy()
    doc = strict(folder / "candidates.json")["candidates"]
    assert len(doc) == rows
    order = np.argsort(-logits, kind="stable")[:rows]
    for c, expected in zip(doc, order):
        assert c["token_id"] == int(expected) or probs[c["token_id"]] == pytest.approx(probs[expected], abs=1e-6)
        assert c["prob"] == pytest.approx(probs[c["token_id"]], abs=1e-5)
        assert c["logit"] == pytest.approx(float(logits[c["token_id"]]), abs=1e-4)
    with open(folder / "candidates.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [int(r["token_id"]) for r in table] == [c["token_id"] for c in doc]


async def test_export_light_and_heavy_views_hold_the_models_numbers(tmp_path, tiny_dirs):
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30)
    settings = make_settings(tmp_path / "prompts", tokens_to_show=12)
    app = make_app(settings, lambda progress: engine, initial_text="Once upon a time there was", start_view="probability")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        ids = list(app.branch.tokens)
        with torch.no_grad():
            out = engine.loaded.model(torch.tensor([ids]), output_hidden_states=True)
        logits = out.logits[0].double()

        folder = await export(pilot, tmp_path)
        values, meta = check_common(app, folder, LIGHT_FILES)
        assert meta["view"] == "probability" and values["status"] == "ready"
        assert meta["fingerprint"] == engine.info.fingerprint and meta["cursor"] == app.branch.cursor
        got = [p["value"] for p in values["positions"]]
        assert got[0] is None  # the first token has no prefix
        expected = torch.softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0].numpy()
        np.testing.assert_allclose(got[1:], expected, atol=1e-5)
        check_candidates(folder, logits[-1].numpy(), 12)

        app._show_view("residual")  # a heavy view with a layer × token grid
        await settle(pilot)
        folder = await export(pilot, tmp_path)
        values, meta = check_common(app, folder, LIGHT_FILES | {"grid.csv"})
        assert meta["view"] == "residual" and values["status"] == "ready"
        n_layers = engine.info.n_layers
        hs = [h[0].double() for h in out.hidden_states[:-1]]  # the stream entering blocks 0..L-1
        grid = np.array(values["grid"]["values"], dtype=float)
        assert grid.shape == (n_layers + 1, len(ids)) and len(values["grid"]["rows"]) == n_layers + 1
        for layer, h in enumerate(hs):
            np.testing.assert_allclose(grid[layer], h.norm(dim=-1).numpy(), rtol=1e-4)
        layer = int(meta["parameters"]["layer"])
        np.testing.assert_allclose([p["value"] for p in values["positions"]], grid[layer], rtol=1e-12)
        with open(folder / "grid.csv", newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
        np.testing.assert_allclose(np.array([r[1:] for r in table[1:]], dtype=float), grid, rtol=1e-12)
        check_candidates(folder, logits[-1].numpy(), 12)


class GatedEngine(FakeEngine):
    """Analyses wait until the test opens the gate: the view stays 'computing'."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def analyze(self, *args, **kwargs):
        self.gate.wait(timeout=30)
        return super().analyze(*args, **kwargs)


async def test_export_while_computing_and_when_unavailable_writes_no_invented_values(tmp_path):
    engine = GatedEngine()
    app = make_app(make_settings(tmp_path / "prompts"), lambda progress: engine,
                   initial_text="Once upon a time", start_view="similarity")
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(200):
            await pilot.pause()
            if app.branch.current is not None and app._view_inflight is not None:
                break
        assert "computing" in screen_text(app)
        await pilot.press("X")
        await pilot.pause()
        engine.gate.set()
        await settle(pilot)
        [folder] = list((tmp_path / "exports").glob("*"))
        values, meta = check_common(app, folder, LIGHT_FILES)  # no grid while there is no result
        assert values["status"] == "computing" and all(p["value"] is None for p in values["positions"])

        app._show_view("attention")  # unavailable on the fake engine
        await settle(pilot)
        folder = await export(pilot, tmp_path)
        values, meta = check_common(app, folder, LIGHT_FILES)
        assert values["status"].startswith("unavailable: ") and all(p["value"] is None for p in values["positions"])

        app._show_view("similarity")  # now computed: the grid is the engine's LayerGrid
        await settle(pilot)
        folder = await export(pilot, tmp_path)
        values, meta = check_common(app, folder, LIGHT_FILES | {"grid.csv"})
        result = engine.analyze("similarity", list(app.branch.tokens), app.branch.cursor, {"space": "raw"})
        grid = np.array([[math.nan if x is None else x for x in row] for row in values["grid"]["values"]])
        np.testing.assert_allclose(grid, result.values, rtol=1e-6, equal_nan=True)
