"""One small training loop for the lab's language models, in the spirit of nanoGPT's train.py.

Random windows of a character- or byte-tokenized text (first 90 % train, last 10 % validation),
AdamW or Muon (+ AdamW for embeddings, norms and biases), linear warm-up then cosine decay, gradient
clipping and accumulation, autocast where the device has a fast low-precision path, optional
`torch.compile`, evaluation every N steps, checkpoints in safetensors with a JSON record, resume, and a
loss-curve PNG. A run stops at `max_iters` or `max_seconds` of training (time spent evaluating and saving
is not counted, as speedruns time it), whichever comes first; the learning-rate
schedule follows whichever is nearer its end, so a time-boxed run still decays to `min_lr` on time.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .lm import LM, config_from_dict, preset as lm_preset
from .muon import Muon
from .precision import autocast_dtype
from .tokenizer import ByteTokenizer, CharTokenizer, Tokenizer, tokenizer_from_dict

__all__ = ["TrainConfig", "TrainProgress", "TrainResult", "RECIPES", "recipe", "train", "load_checkpoint",
           "evaluate", "prepare_data", "plot_losses", "pick_device", "running_mean"]


@dataclass
class TrainConfig:
    preset: str = "imagine-cpu"
    data: str | None = None                   # a UTF-8 text file
    tokenizer: str = "char"                   # "char" or "byte"
    out_dir: str | None = None                # checkpoint folder; None keeps the run in memory
    max_iters: int = 2000
    max_seconds: float | None = None          # training-time budget (evaluation not counted), besides max_iters
    batch_size: int = 12
    grad_accum: int = 1
    optimizer: str = "adamw"                  # "adamw" or "muon" (Muon for hidden matrices, AdamW for the rest)
    lr: float = 1e-3                          # AdamW learning rate
    muon_lr: float = 0.02
    min_lr_ratio: float = 0.1                 # the cosine ends at lr * min_lr_ratio
    warmup_iters: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0                    # 0 disables clipping
    eval_interval: int = 250
    eval_iters: int = 20
    eval_block: int | None = None             # evaluate on windows this long (None: the model's block size);
                                              # 64 compares a long-context model with nanoGPT's CPU run
    val_fraction: float = 0.1
    device: str = "auto"                      # auto, cpu, cuda, mps
    autocast: str = "auto"                    # auto (bf16 where the device has fast bf16), bf16, fp16, off
    compile: bool = False
    threads: int | None = None                # torch intra-op threads on CPU
    seed: int = 1337
    resume: bool = False
    plot: bool = True
    model: dict[str, Any] = field(default_factory=dict)   # LMConfig overrides on top of the preset

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return config_from_dict(cls, data, "training options")


# The tuned hyperparameters of each preset (bench/lm_vs_nanogpt.py measures the CPU ones).
RECIPES: dict[str, dict[str, Any]] = {
    # nanoGPT config/train_shakespeare_char.py with its README's CPU overrides
    "nanogpt-cpu": dict(batch_size=12, max_iters=2000, lr=1e-3, warmup_iters=100, weight_decay=0.1,
                        beta2=0.99, eval_iters=20, autocast="off"),  # upstream trains in float32 on CPU
    "imagine-cpu": dict(batch_size=16, max_iters=2000, optimizer="muon", lr=3e-3, muon_lr=0.02,
                        warmup_iters=50, weight_decay=0.0, eval_iters=20),
    "imagine-cpu-64": dict(batch_size=48, max_iters=2000, optimizer="muon", lr=3e-3, muon_lr=0.02,
                           warmup_iters=50, weight_decay=0.0, eval_iters=20),
    "moe-tiny": dict(batch_size=16, max_iters=2000, optimizer="muon", lr=3e-3, muon_lr=0.02, warmup_iters=50,
                     weight_decay=0.0),
    "nanogpt-gpu": dict(batch_size=64, max_iters=5000, lr=1e-3, warmup_iters=100, weight_decay=0.1, beta2=0.99,
                        eval_iters=200),
}


def recipe(preset: str, **overrides: Any) -> TrainConfig:
    """The preset's training recipe with `overrides` applied (unknown keys raise ValueError)."""
    lm_preset(preset)  # unknown preset -> KeyError listing the choices
    return TrainConfig.from_dict({**RECIPES.get(preset, {}), "preset": preset, **overrides})


@dataclass
class TrainProgress:
    step: int
    max_iters: int
    elapsed: float
    max_seconds: float | None
    lr: float
    loss: float
    val_loss: float | None                    # set on evaluation steps
    tokens_per_s: float


@dataclass
class TrainResult:
    out_dir: Path | None
    steps: int
    seconds: float
    train_loss: float
    val_loss: float
    tokens_per_s: float
    model: LM
    tokenizer: Tokenizer
    history: list[dict[str, Any]]
    plot: Path | None = None


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# -- data ---------------------------------------------------------------------------------------------

def prepare_data(path: str | Path, tokenizer: str | Tokenizer = "char",
                 val_fraction: float = 0.1) -> tuple[Tensor, Tensor, Tokenizer]:
    """Encode a text file; the first (1 - val_fraction) is for training, the rest for validation."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"training data {str(file)!r} not found; pass a UTF-8 text file")
    text = file.read_text(encoding="utf-8")
    tok: Tokenizer
    if isinstance(tokenizer, str):
        kinds: dict[str, Any] = {"char": CharTokenizer, "byte": ByteTokenizer}
        if tokenizer not in kinds:
            raise ValueError(f"tokenizer must be 'char' or 'byte', got {tokenizer!r}")
        tok = kinds[tokenizer].from_text(text)
    else:
        tok = tokenizer
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    cut = int(len(ids) * (1 - val_fraction))
    return ids[:cut], ids[cut:], tok


def get_batch(data: Tensor, batch: int, block: int, gen: torch.Generator,
              device: torch.device) -> tuple[Tensor, Tensor]:
    """`batch` random windows: inputs (B, T) and the same windows shifted by one as targets (B, T)."""
    if len(data) <= block + 1:
        raise ValueError(f"the data ({len(data)} tokens) is shorter than one block ({block + 1})")
    start = torch.randint(len(data) - block - 1, (batch,), generator=gen)
    offsets = start[:, None] + torch.arange(block + 1)                                     # (B, T+1)
    windows = data[offsets]
    return windows[:, :-1].to(device), windows[:, 1:].to(device)


@torch.no_grad()
def evaluate(model: LM, data: Tensor, *, batches: int, batch_size: int, device: torch.device,
             seed: int = 0, autocast: torch.dtype | None = None, block: int | None = None) -> float:
    """Mean loss over `batches` random windows drawn with a fixed seed (the same windows every time), of
    `block` tokens (default: the model's block_size; shorter windows give every token less context)."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(batches):
        x, y = get_batch(data, batch_size, block or model.cfg.block_size, gen, device)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            _, loss = model(x, y)
        assert loss is not None
        losses.append(float(loss))
    model.train(was_training)
    return sum(losses) / len(losses)


# -- optimisation -----------------------------------------------------------------------------------

def make_optimizers(model: LM, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW on everything, or Muon on the 2-D hidden matrices and AdamW on embeddings, norms, biases."""
    decay, no_decay, hidden = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if cfg.optimizer == "muon" and p.dim() == 2 and name.startswith("blocks.") and "router" not in name:
            hidden.append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    fused = {"fused": True} if next(model.parameters()).device.type == "cuda" else {}
    adamw = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **fused)
    if cfg.optimizer == "adamw":
        return [adamw]
    if cfg.optimizer != "muon":
        raise ValueError(f"optimizer must be 'adamw' or 'muon', got {cfg.optimizer!r}")
    return [Muon(hidden, lr=cfg.muon_lr, weight_decay=cfg.weight_decay), adamw]


def lr_factor(step: int, elapsed: float, cfg: TrainConfig, warm_end: float | None) -> float:
    """Linear warm-up over `warmup_iters`, then cosine from 1 to `min_lr_ratio` by the end of the run.
    The end is `max_iters` or `max_seconds`, whichever the run is nearer to; `warm_end` is the time the
    warm-up finished, so the time-based part of the cosine starts there."""
    if step < cfg.warmup_iters:
        return (step + 1) / (cfg.warmup_iters + 1)
    done = (step - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters)
    if cfg.max_seconds and warm_end is not None:
        done = max(done, (elapsed - warm_end) / max(1e-9, cfg.max_seconds - warm_end))
    done = min(1.0, done)
    return cfg.min_lr_ratio + 0.5 * (1 - cfg.min_lr_ratio) * (1 + math.cos(math.pi * done))


# -- checkpoints ----------------------------------------------------------------------------------------

def _save_state(folder: Path, optimizers: list[torch.optim.Optimizer], gen: torch.Generator,
                record: dict[str, Any]) -> None:
    """Optimizer tensors and the data sampler's state to train_state.safetensors, everything else (step,
    elapsed time, parameter groups, history) to JSON: a resumed run draws the same batches it would have."""
    from safetensors.torch import save_file

    tensors: dict[str, Tensor] = {"sampler": gen.get_state()}
    groups = []
    for i, opt in enumerate(optimizers):
        state = opt.state_dict()
        for pid, slots in state["state"].items():
            for key, value in slots.items():
                tensors[f"{i}.{pid}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
        groups.append(state["param_groups"])
    save_file(tensors, str(folder / "train_state.safetensors"))
    (folder / "train_state.json").write_text(json.dumps({**record, "param_groups": groups}, indent=1))


def _load_state(folder: Path, optimizers: list[torch.optim.Optimizer], gen: torch.Generator) -> dict[str, Any]:
    from safetensors.torch import load_file

    record = json.loads((folder / "train_state.json").read_text())
    tensors = load_file(str(folder / "train_state.safetensors"))
    gen.set_state(tensors.pop("sampler"))
    for i, opt in enumerate(optimizers):
        state: dict[int, dict[str, Tensor]] = {}
        for name, value in tensors.items():
            opt_i, pid, key = name.split(".", 2)
            if int(opt_i) == i:
                state.setdefault(int(pid), {})[key] = value
        opt.load_state_dict({"state": state, "param_groups": record["param_groups"][i]})
    return record


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu") -> tuple[LM, Tokenizer, dict[str, Any]]:
    """A trained model (eval mode), its tokenizer and the rest of its record."""
    model, meta = LM.load(folder, device=device)
    if "tokenizer" not in meta:
        raise ValueError(f"{folder} has no tokenizer in config.json; it was not saved by imagine's trainer")
    return model, tokenizer_from_dict(meta["tokenizer"]), meta


def running_mean(ys: Sequence[float]) -> list[float]:
    """Each point averaged with the ~2 % of the run before it (how the lab's loss curves are smoothed)."""
    k = max(1, len(ys) // 50)
    return [sum(ys[max(0, i - k):i + 1]) / len(ys[max(0, i - k):i + 1]) for i in range(len(ys))]


def plot_losses(curves: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "loss") -> Path:
    """One PNG with the training loss (smoothed) and the validation points of each named run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for name, history in curves.items():
        train_pts = [(h["elapsed"], h["loss"]) for h in history if "loss" in h]
        val_pts = [(h["elapsed"], h["val_loss"]) for h in history if "val_loss" in h]
        if train_pts:
            xs, ys = zip(*train_pts)
            line, = ax.plot(xs, running_mean(ys), alpha=0.6, label=f"{name} train")
            if val_pts:
                vx, vy = zip(*val_pts)
                ax.plot(vx, vy, "o-", color=line.get_color(), label=f"{name} val")
    ax.set_xlabel("seconds")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out


# -- the loop ---------------------------------------------------------------------------------------------

def train(cfg: TrainConfig, on_progress: Callable[[TrainProgress], None] | None = None) -> TrainResult:
    if cfg.data is None:
        raise ValueError("no training data: pass a text file (data=... / --data PATH)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    amp = autocast_dtype(cfg.autocast, device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir) if cfg.out_dir else None
    resume = bool(cfg.resume and out and (out / "train_state.json").is_file())
    if cfg.resume and not resume:
        raise FileNotFoundError(f"nothing to resume in {out}: it has no train_state.json")

    if resume and out:
        model, tokenizer, _ = load_checkpoint(out, device)
        train_ids, val_ids, _ = prepare_data(cfg.data, tokenizer, cfg.val_fraction)
    else:
        train_ids, val_ids, tokenizer = prepare_data(cfg.data, cfg.tokenizer, cfg.val_fraction)
        model_cfg = lm_preset(cfg.preset, **{"vocab_size": tokenizer.vocab_size, **cfg.model})
        model = LM(model_cfg).to(device)
    model.train()
    optimizers = make_optimizers(model, cfg)
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    step, spent, history = 0, 0.0, []
    gen = torch.Generator().manual_seed(cfg.seed)                 # draws the training batches
    if resume and out:
        record = _load_state(out, optimizers, gen)
        step, spent, history = record["step"], record["elapsed"], record["history"]
    forward = torch.compile(model) if cfg.compile else model
    block = model.cfg.block_size
    tokens_per_step = cfg.batch_size * cfg.grad_accum * block

    def record_and_save() -> float:
        # in float32 whatever the training precision, so a run's figures compare across precisions
        val = evaluate(model, val_ids, batches=cfg.eval_iters, batch_size=cfg.batch_size, device=device,
                       block=cfg.eval_block)
        history.append({"step": step, "elapsed": round(elapsed, 3), "val_loss": val})
        if out:
            meta = {"tokenizer": tokenizer.to_dict(), "train": {**asdict(cfg), "step": step, "val_loss": val,
                                                               "elapsed": round(elapsed, 3)}}
            model.save(out, meta=meta)
            _save_state(out, optimizers, gen, {"step": step, "elapsed": elapsed, "history": history})
        return val

    started = time.perf_counter() - spent
    elapsed = spent
    warm_end: float | None = spent if step >= cfg.warmup_iters else None
    loss_value, val = float("nan"), float("nan")
    try:
        while step < cfg.max_iters and not (cfg.max_seconds and elapsed >= cfg.max_seconds):
            factor = lr_factor(step, elapsed, cfg, warm_end)
            for opt in optimizers:
                for group in opt.param_groups:
                    group["lr"] = group["base_lr"] * factor
            total = 0.0
            for _ in range(cfg.grad_accum):
                x, y = get_batch(train_ids, cfg.batch_size, block, gen, device)
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    _, loss = forward(x, y)
                assert loss is not None
                (loss / cfg.grad_accum).backward()
                total += float(loss.detach()) / cfg.grad_accum
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            for opt in optimizers:
                opt.step()
                opt.zero_grad(set_to_none=True)
            step += 1
            elapsed = time.perf_counter() - started
            if warm_end is None and step >= cfg.warmup_iters:
                warm_end = elapsed
            loss_value = total
            history.append({"step": step, "elapsed": round(elapsed, 3), "loss": round(total, 4),
                            "lr": cfg.lr * factor})
            val_now = None
            if step % cfg.eval_interval == 0:
                paused = time.perf_counter()
                val = val_now = record_and_save()
                started += time.perf_counter() - paused  # evaluating and saving are not training time
            if on_progress:
                on_progress(TrainProgress(step, cfg.max_iters, elapsed, cfg.max_seconds, cfg.lr * factor, total,
                                          val_now, tokens_per_step * step / max(elapsed, 1e-9)))
    except KeyboardInterrupt:  # keep what was learnt: the folder can be resumed from this step
        if out and step and not (history and history[-1].get("val_loss") is not None
                                 and history[-1]["step"] == step):
            record_and_save()
        raise
    if not history or "val_loss" not in history[-1]:
        val = record_and_save()
    plot = plot_losses({cfg.preset: history}, out / "loss.png", title=f"{cfg.preset} on {Path(cfg.data).name}") \
        if out and cfg.plot else None
    tokens_per_s = tokens_per_step * step / max(elapsed, 1e-9)
    return TrainResult(out, step, elapsed, loss_value, val, tokens_per_s, model.eval(), tokenizer, history, plot)
