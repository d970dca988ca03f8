"""Train a small ReLU SAE on one hook point of a model, on CPU, in minutes.

Activations are collected with :func:`~token_explorer.model.hooks.run_with_hooks` over chunks of
the text (the first position of each chunk, an attention sink with an outsized norm, is left out),
scaled so that E||x||^2 = d, and a ReLU SAE is fitted with Adam on
``sum_d (x̂ - x)^2 + l1 * sum_F f`` with decoder rows kept at unit norm. The scale is folded back
into the saved weights, so the file reads raw activations. The last ``holdout`` of the chunks is
held out for the reported metrics.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..model.hooks import run_with_hooks
from .archs import Dictionary
from .entries import toml_snippet

DATA = Path(__file__).parent / "data"


def default_texts() -> list[Path]:
    """The shipped training text files."""
    return sorted(DATA.glob("*.txt"))


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how."""

    layer: int
    hook: str = "resid_post"
    features: int = 2048
    steps: int = 2000
    l1: float = 1.5  # on activations of x scaled to E||x||^2 = d, unit-norm decoder rows
    lr: float = 2e-3
    batch: int = 512
    context: int = 128  # tokens per forward when collecting activations
    holdout: float = 0.1  # fraction of chunks held out for the metrics
    seed: int = 0
    log_every: int = 100


@dataclass(frozen=True)
class Metrics:
    """Reconstruction quality on held-out activations."""

    fve: float  # fraction of variance explained: 1 - sum||x - x̂||^2 / sum||x - mean x||^2
    l0: float  # mean number of active features per token
    dead: int  # features never active on the held-out tokens
    n_features: int
    tokens: int  # held-out tokens measured


def chunks(ids: Sequence[int], size: int) -> list[list[int]]:
    """``ids`` cut into consecutive chunks of ``size`` tokens (a last shorter one if >= 2 tokens)."""
    out = [list(ids[i : i + size]) for i in range(0, len(ids), size)]
    return [c for c in out if len(c) >= 2]


def collect(model: torch.nn.Module, family, pieces: Sequence[Sequence[int]], layer: int, hook: str,
            log: Callable[[str], None] = lambda _m: None) -> torch.Tensor:
    """(N, d) float32 activations at ``hook`` of ``layer`` over every chunk, first positions left out."""
    rows = []
    for i, piece in enumerate(pieces):
        acts = run_with_hooks(model, family, piece, [hook])[hook]  # (L, T, d)
        rows.append(acts[layer, 1:].float().cpu())  # (T-1, d)
        if (i + 1) % 10 == 0 or i + 1 == len(pieces):
            log(f"activations: {i + 1}/{len(pieces)} chunks")
    return torch.cat(rows)


def init_dictionary(x: torch.Tensor, features: int, generator: torch.Generator) -> Dictionary:
    """A ReLU SAE with unit-norm random decoder rows, tied encoder and b_dec at the mean."""
    d = x.shape[1]
    W_dec = torch.randn(features, d, generator=generator)
    W_dec /= W_dec.norm(dim=1, keepdim=True)  # (F, d)
    return Dictionary("relu", W_enc=W_dec.T.clone(), b_enc=torch.zeros(features),
                      b_dec=x.mean(0).clone(), W_dec=W_dec, apply_b_dec_to_input=True)


def evaluate(sae: Dictionary, x: torch.Tensor) -> Metrics:
    """Metrics of ``sae`` on activations ``x`` (N, d)."""
    with torch.no_grad():
        f = sae.encode(x)  # (N, F)
        err = (sae.decode(f, x) - x).pow(2).sum()
        var = (x - x.mean(0)).pow(2).sum()
        active = f > 0
        return Metrics(fve=float(1 - err / var), l0=float(active.sum(1).float().mean()),
                       dead=int((~active.any(0)).sum()), n_features=sae.n_features, tokens=int(x.shape[0]))


def fit(x: torch.Tensor, cfg: TrainConfig, log: Callable[[str], None] = lambda _m: None) -> Dictionary:
    """A ReLU SAE fitted to ``x`` (N, d), returned in raw activation units."""
    generator = torch.Generator().manual_seed(cfg.seed)
    d = x.shape[1]
    scale = math.sqrt(d / float(x.pow(2).sum(1).mean()))  # x * scale has E||x||^2 = d
    xs = x * scale
    init = init_dictionary(xs, cfg.features, generator)
    W_enc, b_enc, W_dec, b_dec = (t.clone().requires_grad_(True) for t in (init.W_enc, init.b_enc, init.W_dec, init.b_dec))
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=cfg.lr, betas=(0.9, 0.999))
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        batch = xs[torch.randint(0, xs.shape[0], (cfg.batch,), generator=generator)]  # (B, d)
        f = torch.relu((batch - b_dec) @ W_enc + b_enc)  # (B, F)
        recon = f @ W_dec + b_dec  # (B, d)
        mse = (recon - batch).pow(2).sum(1).mean()
        l1 = f.sum(1).mean()
        warm = min(1.0, step / max(1, cfg.steps // 20))  # L1 warm-up over the first 5% of steps
        loss = mse + cfg.l1 * warm * l1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
        if step % cfg.log_every == 0 or step == cfg.steps:
            loss, mse, batch, f = loss.detach(), mse.detach(), batch.detach(), f.detach()
            with torch.no_grad():
                fvu = float(mse / (batch - batch.mean(0)).pow(2).sum(1).mean())
                l0 = float((f > 0).sum(1).float().mean())
            log(f"step {step}/{cfg.steps}  loss {loss.item():.2f}  FVE {1 - fvu:.3f}  L0 {l0:.1f}  "
                f"{time.perf_counter() - start:.0f}s")
    with torch.no_grad():  # fold the scale back in: the file reads raw activations
        return Dictionary("relu", W_enc=(W_enc * scale).detach().contiguous(), b_enc=b_enc.detach().clone(),
                          b_dec=(b_dec / scale).detach().clone(), W_dec=(W_dec / scale).detach().contiguous(),
                          apply_b_dec_to_input=True)


def save(sae: Dictionary, path: Path, metadata: dict[str, str]) -> None:
    """Write ``sae`` in the SAELens layout (W_enc (d, F), b_enc, W_dec (F, d), b_dec)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"W_enc": sae.W_enc, "b_enc": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


@dataclass(frozen=True)
class Trained:
    """What one training run produced."""

    path: Path
    snippet: str  # its [[sae]] table
    initial: Metrics  # held-out metrics of the initial dictionary
    final: Metrics  # held-out metrics of the trained one


def train(model: torch.nn.Module, family, tokenizer, texts: Sequence[str], cfg: TrainConfig, out: Path,
          *, model_name: str = "", model_fingerprint: str = "",
          log: Callable[[str], None] = lambda _m: None) -> Trained:
    """Collect activations, fit, evaluate on held-out text and save; see the module docstring."""
    torch.manual_seed(cfg.seed)
    pieces: list[list[int]] = []
    for text in texts:
        pieces += chunks(list(tokenizer(text)["input_ids"]), cfg.context)
    n_held = max(1, round(len(pieces) * cfg.holdout))
    if len(pieces) < 2:
        raise ValueError("the training text is too short: need at least two chunks of tokens")
    train_pieces, held_pieces = pieces[:-n_held], pieces[-n_held:]
    log(f"{sum(len(p) for p in pieces)} tokens in {len(pieces)} chunks ({n_held} held out); "
        f"layer {cfg.layer} {cfg.hook}")
    with torch.no_grad():
        x_train = collect(model, family, train_pieces, cfg.layer, cfg.hook, log)
        x_held = collect(model, family, held_pieces, cfg.layer, cfg.hook)
    initial = evaluate(init_dictionary(x_train, cfg.features, torch.Generator().manual_seed(cfg.seed)), x_held)
    sae = fit(x_train, cfg, log)
    final = evaluate(sae, x_held)
    path = out / f"sae-L{cfg.layer}-{cfg.hook}.safetensors"
    digest = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()
    metadata = {"format": "saelens", "architecture": "relu", "layer": str(cfg.layer), "hook": cfg.hook,
                "model": model_name, "model_fingerprint": model_fingerprint, "text_sha256": digest,
                **{f"train_{k}": str(v) for k, v in asdict(cfg).items()},
                **{f"heldout_{k}": str(v) for k, v in asdict(final).items()}}
    save(sae, path, metadata)
    snippet = toml_snippet({"name": f"trained L{cfg.layer} {cfg.hook} ({cfg.features})", "layer": cfg.layer,
                            "hook": cfg.hook, "architecture": "relu", "path": str(path.resolve())})
    path.with_suffix(".toml").write_text(
        f"# {model_name}: held-out FVE {final.fve:.3f}, L0 {final.l0:.1f}, "
        f"dead {final.dead}/{final.n_features}\n" + snippet, encoding="utf-8")
    return Trained(path, snippet, initial, final)
