"""Episodic training, one loop for both stages of `mdmf train`.

* `--stage head`: the few-shot heads on cached features (the backbone ran once, in stage one).
* `--stage e2e`: the same heads with the CLIP visual encoder in front, from frames (`mdmf.pipeline.train.e2e`).

What differs is only where an episode's frame features come from (an episode input, `train.inputs.EpisodeInput`:
`CachedFeatures`, or `train.e2e.FrameInput` for e2e) and which modules train; the loop, the run folder, checkpoints,
validation and resume are shared. `_train` is the loop; each optimizer step is `_optimizer_step` (accumulate over the
step's chunks, agree across processes, update, log), with `_validate` and `_checkpoint` between steps, all on one
`_Training` state. A run folder (`mdmf.pipeline.runs.RunDir`, where its layout is written down) holds everything
needed to continue or evaluate it: config.json, metrics.jsonl, last.pt (for --resume), best.pt, and for e2e visual.pt.

Episode `i` is a pure function of (seed, i), and so is the randomness of the chunk of episodes a forward pass sees
(PPS draws, dropout: torch is re-seeded from (seed, first episode of the chunk)): a resumed run continues exactly as
an uninterrupted one would, and N processes (`torchrun`, `mdmf.pipeline.core.distributed`) that split each optimizer step's
episodes between them compute the update one process computes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mdmf.base import ClassTexts
from mdmf.config import ModelConfig
from mdmf.pipeline.core import distributed
from mdmf.pipeline.core.checkpoint import load_checkpoint, save_atomic
from mdmf.pipeline.core.errors import MdmfError, dataclass_from_dict
from mdmf.pipeline.core.interrupt import DeferredInterrupt
from mdmf.pipeline.core.limits import (COUNT, EPISODES, NONNEGATIVE, NONNEGATIVE_REAL, RATE, check_preset_ranges,
                                       check_ranges)
from mdmf.pipeline.core.paths import check_writable, file_system_errors
from mdmf.pipeline.core.presets import Preset, load_preset, store_differences
from mdmf.pipeline.core.progress import progress_bar, progress_note
from mdmf.pipeline.episodes.sampler import (EpisodeBatch, EpisodeSampler, EpisodeSpec, check_episodes_fit, class_sizes,
                                            fitted_episode, plural, videos_each)
from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate
from mdmf.pipeline.features.store import FeatureStore
from mdmf.pipeline.runs import RunDir, saved_model_config
from mdmf.pipeline.train.e2e import E2E_RANGES, E2EConfig, FrameInput
from mdmf.pipeline.train.inputs import CachedFeatures, EpisodeInput
from mdmf.pipeline.train.tracking import Trackers, check_trackers, open_trackers, tracker_names
from mdmf.registry import build_model

STAGES = ("head", "e2e")
DEFAULT_LR = {"head": 1e-4, "e2e": 1e-5}  # heads; e2e: the paper's 1e-5 (the backbone's is E2EConfig.backbone_lr)
DEFAULT_BATCH_EPISODES = {"head": 16, "e2e": 1}  # e2e: one episode's frames per backbone pass bounds GPU memory
DEFAULT_EPISODES_PER_STEP = 16  # the authors' 16 accumulated episodes per optimizer step
DEFAULT_WAY, DEFAULT_QUERIES = 5, 5  # the field's 5-way episodes; 5 queries per class at train time
VAL_CHOICES = ("val", "none")


def fit_to_world(stage: str, episodes_per_step: int | None, batch_episodes: int | None, world: int,
                 batch_at_most: int | None = None) -> tuple[int, int]:
    """(episodes per optimizer step, episodes per forward pass) for `world` processes (torchrun); None: not given.

    Not given, episodes_per_step is 16, or the next multiple of `world` when 16 is not one (3 processes: 18), and
    batch_episodes the largest divisor of each process's share (episodes_per_step / world) up to 16 for head, 1 for
    e2e (or up to `batch_at_most`, a preset's value). With one process that is 16 and 16 (head), as always. Values
    given are kept as they are; when they cannot be split over the processes, one MdmfError says what would.
    N processes compute the update one process computes with the same two values (`_episode_firsts`).
    """
    if world < 1:
        raise MdmfError(f"{world} processes: WORLD_SIZE must be at least 1")
    note = " (with --resume: the run's saved settings; resume it with a number of processes they split over)"
    if episodes_per_step is None:
        episodes_per_step = -(-DEFAULT_EPISODES_PER_STEP // world) * world
    if episodes_per_step < 1 or episodes_per_step % world:
        good = max(world, -(-episodes_per_step // world) * world)
        raise MdmfError(f"--episodes-per-step {episodes_per_step} does not split over {world} processes: give a "
                        f"multiple of {world} (e.g. {good}), or leave it out{note}")
    share = episodes_per_step // world
    if batch_episodes is None:
        cap = max(1, batch_at_most or DEFAULT_BATCH_EPISODES[stage])
        batch_episodes = max(b for b in range(1, min(cap, share) + 1) if share % b == 0)
    if batch_episodes < 1 or share % batch_episodes:
        good = max(b for b in range(1, min(max(batch_episodes, 1), share) + 1) if share % b == 0)
        raise MdmfError(f"--batch-episodes {batch_episodes} does not divide the {share} episodes each of the {world} "
                        f"process(es) runs per step (--episodes-per-step {episodes_per_step}): give a divisor of "
                        f"{share} (e.g. {good}), or leave it out{note}")
    return episodes_per_step, batch_episodes


# The allowed values of TrainConfig's numeric settings (`mdmf.pipeline.core.limits`); None: not given, the default.
TRAIN_RANGES = {**EPISODES, "steps": COUNT, "episodes_per_step": COUNT, "batch_episodes": COUNT, "lr": RATE,
                "weight_decay": NONNEGATIVE_REAL, "lr_steps": COUNT, "lr_factors": RATE, "warmup_steps": NONNEGATIVE,
                "warmup_start_lr": NONNEGATIVE_REAL, "grad_clip": RATE, "val_every": COUNT, "val_episodes": COUNT,
                "val_shot": COUNT, "seed": NONNEGATIVE, "threads": COUNT}


@dataclass
class TrainConfig:
    stage: str = "head"
    store: str = ""  # feature store path
    run_dir: str = ""
    model: dict = field(default_factory=dict)  # ModelConfig overrides (name, views, pps, distillation, ...)
    # None: DEFAULT_WAY classes and DEFAULT_QUERIES queries per class, lowered to what the train split holds
    # (`settle_episodes`, said once); config.json records the values trained with.
    way: int | None = None
    shot: int = 1
    queries: int | None = None  # query videos per class at train time
    steps: int = 300  # optimizer steps
    # Gradients accumulated over this many episodes per step, over all processes, and episodes per forward pass.
    # None: fitted to the number of processes (`fit_to_world`): 16 and 16 head (16 and 1 e2e) for one process.
    episodes_per_step: int | None = None
    batch_episodes: int | None = None
    lr: float | None = None  # heads (None: 1e-4 head, with a frozen backbone; 1e-5 e2e, the paper's)
    weight_decay: float = 0.0  # Adam's L2 term (torch.optim.Adam weight_decay)
    # Learning-rate schedule, a pure function of the optimizer step (`lr_factor`): every group's lr is multiplied by
    # lr_factors[i] from step lr_steps[i-1] on (lr_factors[0] before the first); empty: constant (the default, as
    # the authors' MDMF training). A linear warm-up over `warmup_steps` starts at warmup_start_lr (heads' lr).
    lr_steps: tuple[int, ...] = ()
    lr_factors: tuple[float, ...] = ()
    warmup_steps: int = 0
    warmup_start_lr: float | None = None
    grad_clip: float | None = None
    val_every: int = 25  # steps
    val_episodes: int = 1000
    val_shot: int | None = None  # None: same as shot
    # "val": validate on the store's val split (a store without one trains on without: "none", said once);
    # "none": no validation, best.pt is the last checkpoint (written every val_every steps and at the end).
    val: str = "val"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    init: str | None = None  # start the heads from this run's best.pt (their model config comes with it)
    e2e: E2EConfig | None = None  # stage e2e: backbone, frames, AMP, ... (None: the defaults)
    log: tuple[str, ...] = ()  # trackers beside metrics.jsonl: csv, tensorboard, wandb (train.tracking); rank 0

    def __post_init__(self) -> None:
        self.validate()
        if isinstance(self.e2e, dict):
            self.e2e = E2EConfig.from_dict(self.e2e)
        if self.stage == "e2e" and self.e2e is None:
            self.e2e = E2EConfig()
        if self.lr is None:
            self.lr = DEFAULT_LR[self.stage]
        self.episodes_per_step, self.batch_episodes = fit_to_world(
            self.stage, self.episodes_per_step, self.batch_episodes, distributed.env_world())
        self.log = tracker_names(self.log)
        self.lr_steps = tuple(int(v) for v in self.lr_steps)  # JSON gives lists
        self.lr_factors = tuple(float(v) for v in self.lr_factors)
        if self.lr_steps or self.lr_factors:
            if len(self.lr_factors) != len(self.lr_steps) + 1 or list(self.lr_steps) != sorted(set(self.lr_steps)):
                raise MdmfError(f"learning-rate schedule: lr_steps {list(self.lr_steps)} must be increasing steps "
                                f"and lr_factors {list(self.lr_factors)} one factor more than lr_steps")
        if self.warmup_steps and self.warmup_start_lr is None:
            raise MdmfError("warm-up: with warmup_steps > 0, give warmup_start_lr (the heads' lr at step 0)")

    def validate(self) -> None:
        """Refuse a stage or a numeric setting out of its range (`TRAIN_RANGES`) in one line, before any work."""
        if self.stage not in STAGES:
            raise MdmfError(f"--stage {self.stage}: use one of {', '.join(STAGES)}")
        if self.val not in VAL_CHOICES:
            raise MdmfError(f"--val {self.val}: use one of {', '.join(VAL_CHOICES)}")
        check_ranges(self, TRAIN_RANGES)

    def lr_factor(self, step: int) -> float:
        """The factor on every group's lr for optimizer step `step` (0-based): the step schedule, with the warm-up
        rising linearly from warmup_start_lr / lr at step 0 to the schedule's value at step warmup_steps."""
        factors = self.lr_factors or (1.0,)
        scheduled = lambda s: factors[sum(s >= b for b in self.lr_steps)]  # noqa: E731
        if step < self.warmup_steps:
            start = self.warmup_start_lr / self.lr
            return start + (scheduled(self.warmup_steps) - start) * step / self.warmup_steps
        return scheduled(step)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return dataclass_from_dict(cls, data, "training")


def build_train_config(preset: str | None, given: dict, model: dict, e2e: dict | None = None) -> TrainConfig:
    """A `TrainConfig` from a preset (`mdmf.pipeline.core.presets`, by name or path, or None) and what the user gave.

    Precedence: the dataclass defaults, then the preset's `train` section (its `e2e` entry for the e2e settings) and
    `model` section, then `given` (training settings named explicitly, e.g. on the command line), `model`
    (`--set`-style model overrides) and `e2e`. `given` must hold `stage`, `store` and `run_dir`.
    """
    p = load_preset(preset) if preset else Preset(name="")
    train = dict(p.train)
    e2e_preset = train.pop("e2e", {})
    check_preset_ranges(preset, "train", train, TRAIN_RANGES)  # before a preset value is used (batch_episodes)
    check_preset_ranges(preset, "train.e2e", e2e_preset, E2E_RANGES)
    check_ranges(e2e or {}, E2E_RANGES)  # given for --stage head too: refused there as well, not silently ignored
    _check_model_overrides(f"--preset {preset}: model", p.model)
    _check_model_overrides("--set", model)
    merged = {**train, **given, "model": {**p.model, **model}}
    if "batch_episodes" in train and "batch_episodes" not in given:  # a preset's pass size: at most that, fitted
        merged["batch_episodes"] = fit_to_world(merged["stage"], merged.get("episodes_per_step"), None,
                                                distributed.env_world(), batch_at_most=train["batch_episodes"])[1]
    if merged["stage"] == "e2e":
        merged["e2e"] = E2EConfig.from_dict({**e2e_preset, **(e2e or {})})
    return TrainConfig.from_dict(merged)


def settle_episodes(cfg: TrainConfig, store: FeatureStore | None = None) -> list[str]:
    """Fill what `cfg` leaves to the data, once (the same on every rank), and say it: the way and queries not given
    (the defaults, lowered to what the train split holds), and validation on a store without a val split (none).
    Then every split the run samples must fit its episodes, checked in one line each. Returns the notes."""
    store = store or FeatureStore.open(cfg.store)
    notes = []
    labels = store.labels("train")
    if cfg.way is None or cfg.queries is None:
        way, queries = fitted_episode(labels, cfg.shot, cfg.way, cfg.queries, DEFAULT_WAY, DEFAULT_QUERIES)
        if (cfg.way is None and way != DEFAULT_WAY) or (cfg.queries is None and queries != DEFAULT_QUERIES):
            sizes = class_sizes(labels)
            notes.append(f"the train split has {plural(len(sizes), 'class')} ({videos_each(sizes)}): training "
                         f"{way}-way {cfg.shot}-shot with "
                         f"{plural(queries, 'query')} per class (defaults {DEFAULT_WAY}-way, {DEFAULT_QUERIES} "
                         "queries); give --way / --queries to choose")
        cfg.way, cfg.queries = way, queries
    check_episodes_fit(labels, EpisodeSpec(cfg.way, cfg.shot, cfg.queries), "train")
    if cfg.val == "val" and "val" not in store.splits:
        cfg.val = "none"
        notes.append(f"the store {store.path} has no val split: training without validation, best.pt is the last "
                     "checkpoint (give --val none to say so; extract a val split to pick the best step)")
    if cfg.val == "val":
        check_episodes_fit(store.labels("val"), EpisodeSpec(cfg.way, cfg.val_shot or cfg.shot, 1), "val")
    return notes


def _check_model_overrides(where: str, values: dict) -> None:
    """Model settings' names, types and choices, said before any work (their ranges against the store's D and T
    when the heads are built: `build_head`)."""
    from mdmf.config import ModelConfig

    try:
        ModelConfig.check_overrides(values)
    except ValueError as err:
        raise MdmfError(f"{where}: {err}") from None


def preset_warnings(preset: str | None, store_path: str | Path) -> list[str]:
    """One line when the store was extracted otherwise than the preset's `extract` section says (e.g. `--preset
    reference` heads on a TSN / CLIP-normalised store); nothing when there is no preset or no readable store yet."""
    if not preset:
        return []
    p = load_preset(preset)
    try:
        identity = FeatureStore.open(store_path).meta.identity
    except MdmfError:
        return []  # training reports the store problem itself
    diff = store_differences(p, identity)
    if not diff:
        return []
    return [f"the store {store_path} was not extracted as preset {p.name} says: {', '.join(diff)}; extract it with "
            f"`mdmf extract --preset {p.name}` to reproduce the preset's computation"]


def build_head(store: FeatureStore, overrides: dict):
    """The model for a store: D, T and the number of training classes (for heads with a classifier over them) come
    from the store, everything else from `overrides` over the paper defaults."""
    classes = len(store.strings("train", "class_names")) if "train" in store.splits else 0
    try:
        cfg = ModelConfig.from_dict({**overrides, "dim": store.meta.dim, "frames": store.meta.frames,
                                     "train_classes": classes})
        cfg.validate()
        return build_model(cfg)
    except ValueError as err:
        raise MdmfError(f"model settings: {err}") from None


def _chunk_seed(seed: int, first: int, salt: int = 0) -> int:
    return (int(seed) * 1_000_003 + int(first) + salt * 7_919_000_003) % (2**63)


class EpisodeModel(nn.Module):
    """The heads, with the visual encoder in front for e2e (easyfsl style: the heads always take features).

    forward: episode videos `(E·(N·K + M), …)` (cached features `(…, T, D)`, or uint8 frames `(…, T, 3, S, S)` for
    e2e; supports first, then queries) -> (loss, loss parts, logits `(E, M, N)` detached).
    """

    def __init__(self, heads: nn.Module, encoder: nn.Module | None = None):
        super().__init__()
        self.heads, self.encoder = heads, encoder

    def forward(self, videos: torch.Tensor, batch: EpisodeBatch, prompts: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator, class_texts: ClassTexts):
        feats = self.encoder(videos) if self.encoder is not None else videos.float()  # (B, T, D)
        E, N, K = batch.support.shape
        M = batch.query.shape[1]
        support = feats[: E * N * K].reshape(E, N, K, *feats.shape[1:])
        query = feats[E * N * K :].reshape(E, M, *feats.shape[1:])
        scores = self.heads(support, prompts, query, generator=generator, class_texts=class_texts)
        loss, parts = self.heads.loss(scores, labels)
        return loss, parts, scores.logits.detach()


def _saved_heads(state: dict) -> dict:
    """The model settings of a checkpoint as overrides (all fields but D and T, which come from the store)."""
    config = saved_model_config(state, "the checkpoint")
    return {k: v for k, v in config.to_dict().items() if k not in ("dim", "frames")}


def _resume_config(cfg: TrainConfig, state: dict) -> TrainConfig:
    """The run's saved config, with the settings that do not change the numbers taken from `cfg`."""
    # The run folder as named now and its store wherever it is found (checked by identity): a moved run resumes.
    store = RunDir(cfg.run_dir).open_store(state=state, extra=(cfg.store,))
    new = TrainConfig.from_dict({**state["train_config"], "progress": cfg.progress, "device": cfg.device,
                                 "log": cfg.log, "model": _saved_heads(state), "run_dir": cfg.run_dir,
                                 "store": str(store.path)})
    if new.e2e is not None and cfg.e2e is not None:
        new.e2e.workers = cfg.e2e.workers
        new.e2e.root = cfg.e2e.root or new.e2e.root
    return new


def train(cfg: TrainConfig, resume: bool = False, steps: int | None = None) -> dict:
    """Train (or resume) a run; returns the best validation record (on rank 0; other ranks get {}).

    On resume the run's saved config is used (the arguments' settings are ignored, except `progress`, `device`
    and, for e2e, `root` and `workers`); `steps` extends (or sets) the total number of optimizer steps.
    """
    run = RunDir(cfg.run_dir)
    # A run folder without a checkpoint (stopped or killed before its first one) holds nothing to keep: started over.
    if run.holds_run() and not resume and (run.last.is_file() or run.best.is_file()):
        raise MdmfError(f"{run} already holds a run: add --resume to continue it, or choose another --name")
    if resume:
        if not run.last.is_file():
            raise MdmfError(f"{run}: nothing to resume (no last.pt: it stopped before its first checkpoint); start "
                            "it again without --resume")
        state = load_checkpoint(run.last)
        cfg = _resume_config(cfg, state)
    else:
        state = None
    if steps is not None:
        cfg.steps = steps
        cfg.validate()
    check_trackers(cfg.log)  # a missing package is said before the run starts
    check_writable(run.path, "--runs")  # a file in the way, a read-only disk: said before any work
    ctx = distributed.setup(cfg.device)
    try:
        fit_to_world(cfg.stage, cfg.episodes_per_step, cfg.batch_episodes, ctx.world)  # checks the values given
        ctx.barrier()  # every rank has checked the run folder before rank 0 writes into it
        # A full disk mid-run: checkpoints are written to a temporary file and renamed, so the last good one stays.
        with file_system_errors(run, lambda: _what_is_kept(run)):
            return _train(cfg, state, ctx)
    finally:
        distributed.teardown(ctx)


def _what_is_kept(run: RunDir) -> str:
    try:
        step = run.trained_steps()
    except MdmfError:
        step = None
    if step is None:
        return "no checkpoint was written yet: free space (or fix the folder) and start the run again"
    return (f"the last good checkpoint is kept (last.pt, step {step}): free space and run the same command with "
            "--resume")


def _init_heads(cfg: TrainConfig) -> dict | None:
    """`--init runs/<head-run>`: its best.pt; the heads' config becomes that run's."""
    if not cfg.init:
        return None
    path = RunDir(cfg.init).best
    if not path.is_file():
        raise MdmfError(f"--init {cfg.init}: no best.pt there; give a run folder of `mdmf train` that validated once")
    state = load_checkpoint(path)
    cfg.model = _saved_heads(state)
    return state


def _train(cfg: TrainConfig, state: dict | None, ctx: distributed.DistContext) -> dict:
    """One process's run: set up (or restore) the training, then optimizer steps until `cfg.steps`."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t = _setup(cfg, state, ctx)
    start = time.perf_counter()
    t.model.train()
    chunk_iter = iter(t.inp.chunks(t.sampler, _episode_firsts(t), cfg.batch_episodes))
    with progress_bar(cfg.progress and ctx.is_main, f"train {cfg.stage}", total=cfg.steps, unit="steps",
                      completed=t.step) as advance, DeferredInterrupt() as interrupt, t.trackers:
        while t.step < cfg.steps:
            fields_, stop = _optimizer_step(t, chunk_iter, interrupt, start)
            validating = t.step % cfg.val_every == 0 or t.step == cfg.steps
            if validating and (accuracy := _validate(t)) is not None:
                fields_["val"] = accuracy
            if validating or stop:  # stop (Ctrl-C): keep every finished step, --resume continues exactly from here
                if ctx.is_main:
                    _checkpoint(t, t.run.last)
                ctx.barrier()
            advance(1, **fields_)
            if stop:
                raise KeyboardInterrupt
    return t.best if ctx.is_main else {}


@dataclass
class _Training:
    """What the steps of one process's run share (built by `_setup`; `step` and `best` change as it trains)."""
    cfg: TrainConfig
    ctx: distributed.DistContext
    run: RunDir
    store: FeatureStore
    heads: nn.Module
    inp: EpisodeInput
    model: EpisodeModel
    net: nn.Module  # `model`, wrapped in DistributedDataParallel under torchrun
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    params: list  # every trained parameter (for gradient clipping)
    base_lrs: list[float]  # each group's lr before the schedule's factor
    prompts: torch.Tensor  # (C, D) float32: the train split's prompt embeddings
    sampler: EpisodeSampler
    val_cfg: EvalConfig
    chunks: int  # forward passes per process and optimizer step
    step: int = 0
    best: dict = field(default_factory=lambda: {"val_accuracy": -1.0, "step": 0})
    trackers: Trackers = field(default_factory=Trackers)  # --log (rank 0): the rows of metrics.jsonl


def _setup(cfg: TrainConfig, state: dict | None, ctx: distributed.DistContext) -> _Training:
    """Heads, episode input, optimizer; restored from `state` (last.pt) on resume, else a new run folder."""
    run, device = RunDir(cfg.run_dir), ctx.device
    store = FeatureStore.open(cfg.store)
    for note in settle_episodes(cfg, store):  # already settled (and said) by `mdmf train`; Python callers hear it here
        if ctx.is_main and cfg.progress:
            progress_note(note)
    heads = _build_heads(cfg, store, _init_heads(cfg) if state is None else None)
    if cfg.stage == "e2e":

        inp = FrameInput(cfg, store, ctx)
    else:
        inp = CachedFeatures(store, val=cfg.val == "val")
    model = EpisodeModel(heads, inp.encoder).to(device)
    opt, params = _optimizer(cfg, heads, inp)
    t = _Training(cfg=cfg, ctx=ctx, run=run, store=store, heads=heads, inp=inp, model=model, net=model, opt=opt,
                  scaler=torch.amp.GradScaler(device.type, enabled=inp.uses_scaler), params=params,
                  base_lrs=[g["lr"] for g in opt.param_groups], prompts=None, sampler=None, val_cfg=None,
                  chunks=cfg.episodes_per_step // (cfg.batch_episodes * ctx.world))
    if state is not None:
        _restore(t, state)
    elif ctx.is_main:
        run.start({"train": asdict(cfg), "model": heads.config.to_dict(), "store": store.meta.identity,
                   "store_location": run.store_location(store.path)})
    if ctx.is_main:
        t.trackers = open_trackers(cfg.log, run, asdict(cfg))
    t.net = ctx.wrap(model)
    t.prompts = torch.as_tensor(inp.train.prompt_embeddings, dtype=torch.float32)
    t.sampler = EpisodeSampler(inp.train.labels, EpisodeSpec(cfg.way, cfg.shot, cfg.queries), cfg.seed,
                               views=inp.views)
    t.val_cfg = EvalConfig(way=cfg.way, shot=cfg.val_shot or cfg.shot, queries=1, episodes=cfg.val_episodes,
                           seed=cfg.seed + 1, device=str(device), progress=False)
    return t


def _build_heads(cfg: TrainConfig, store: FeatureStore, init: dict | None) -> nn.Module:
    """The heads for `store`, seeded (same seed, same initial weights), or `--init`'s trained ones."""
    torch.manual_seed(cfg.seed)
    heads = build_head(store, cfg.model)
    if not heads.needs_training and cfg.stage != "e2e":  # e2e trains the backbone through it (as CNN_TSN is trained)
        raise MdmfError(f"model {heads.config.name} has no trainable parameters on cached features: evaluate it "
                        f"directly (mdmf eval --model {heads.config.name}), or fine-tune the backbone through it "
                        "with --stage e2e")
    if init is not None:
        # another dataset is what --init is for (fine-tune on it); another encoder or recipe never fits
        RunDir(cfg.init).check_store(store, init, cross_dataset=True, option=f"--init {cfg.init}: the store {store.path} was ")
        if (init["model_config"]["dim"], init["model_config"]["frames"]) != (heads.config.dim, heads.config.frames):
            raise MdmfError(f"--init {cfg.init}: its heads are for D={init['model_config']['dim']}, "
                            f"T={init['model_config']['frames']}; this store has D={heads.config.dim}, "
                            f"T={heads.config.frames}")
        heads.load_state_dict(init["model"])
    return heads


def _optimizer(cfg: TrainConfig, heads: nn.Module, inp: EpisodeInput) -> tuple[torch.optim.Adam, list]:
    """Adam over the heads' group and the input's (e2e: the visual encoder at its own lr); and all their params."""
    groups = [{"params": [p for p in heads.parameters() if p.requires_grad], "lr": cfg.lr,
               "weight_decay": cfg.weight_decay}] + inp.param_groups()
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise MdmfError(f"model {cfg.model.get('name', 'mdmf')} has no trainable parameters: evaluate it directly")
    return torch.optim.Adam(groups), [p for g in groups for p in g["params"]]


def _restore(t: _Training, state: dict) -> None:
    """--resume: weights, optimizer, scaler, step, best and RNG from last.pt; metrics after its step are dropped."""
    t.heads.load_state_dict(state["model"])
    t.inp.load_state_dict(state)
    t.opt.load_state_dict(state["optimizer"])
    if "scaler" in state:
        t.scaler.load_state_dict(state["scaler"])
    t.step, t.best = int(state["step"]), dict(state["best"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and t.ctx.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], t.ctx.device)
    if t.ctx.is_main:
        t.run.keep_metrics_upto(t.step)


def _episode_firsts(t: _Training) -> list[int]:
    """The first episode of each of this process's forward passes, from the current step to the last: each step's
    `episodes_per_step` episodes are split between the processes, then into chunks of `batch_episodes`."""
    cfg, ctx = t.cfg, t.ctx
    per_rank = cfg.episodes_per_step // ctx.world
    return [s * cfg.episodes_per_step + ctx.rank * per_rank + c * cfg.batch_episodes
            for s in range(t.step, cfg.steps) for c in range(t.chunks)]


def _optimizer_step(t: _Training, chunk_iter, interrupt: DeferredInterrupt, start: float) -> tuple[dict, bool]:
    """One optimizer step: gradients accumulated over this step's chunks, the update, its metrics row; returns the
    progress bar's fields and whether to stop (Ctrl-C, agreed by all processes)."""
    cfg = t.cfg
    totals, correct, seen = _accumulate(t, chunk_iter)
    totals, correct, seen, stop = _agree(t, totals, correct, seen, interrupt.requested)
    factor = _update(t)
    t.step += 1
    if not all(np.isfinite(v) for v in totals.values()):
        raise MdmfError(f"training diverged at step {t.step} (loss {totals}); lower --lr")
    record = {"step": t.step, "episodes": t.step * cfg.episodes_per_step, "lr": cfg.lr * factor, **totals,
              "train_accuracy": 100.0 * correct / seen, "seconds": round(time.perf_counter() - start, 3)}
    if t.ctx.is_main:
        _log(t, "train", record)
    return {"loss": totals["loss"], "acc": record["train_accuracy"]}, stop


def _log(t: _Training, kind: str, record: dict) -> None:
    """A metrics row (rank 0): metrics.jsonl, then the --log trackers."""
    t.run.append_metrics(record)
    t.trackers.log(kind, record)


def _accumulate(t: _Training, chunk_iter) -> tuple[dict[str, float], int, int]:
    """Forward and backward over this step's chunks (DDP syncs only on the last); (mean loss parts, correct, seen)."""
    device = t.ctx.device
    t.opt.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    correct = seen = 0
    for c in range(t.chunks):
        first, batch, videos = next(chunk_iter)
        torch.manual_seed(_chunk_seed(t.cfg.seed, first, salt=1))  # dropout: a function of the episodes
        labels = batch.query_labels.to(device)
        with t.ctx.no_sync(t.net, skip=c < t.chunks - 1):
            loss, parts, logits = t.net(
                videos.to(device, non_blocking=True), batch, t.prompts[batch.classes].to(device), labels,
                torch.Generator().manual_seed(_chunk_seed(t.cfg.seed, first)),
                ClassTexts(t.prompts.to(device), batch.classes.to(device)))
            t.scaler.scale(loss / t.chunks).backward()
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            totals[k] = totals.get(k, 0.0) + float(v) / t.chunks
        correct += int((logits.argmax(-1) == labels).sum())
        seen += labels.numel()
    return totals, correct, seen


def _agree(t: _Training, totals: dict, correct: int, seen: int, requested: bool) -> tuple[dict, int, int, bool]:
    """Under torchrun: what one process would have logged (means over all the step's episodes), and stop only
    when the ranks agree; alone: as they are."""
    ctx = t.ctx
    if not ctx.distributed:
        return totals, correct, seen, requested
    keys = list(totals)
    summed = ctx.sum([totals[k] for k in keys] + [correct, seen, float(requested)])
    return {k: v / ctx.world for k, v in zip(keys, summed)}, int(summed[-3]), int(summed[-2]), summed[-1] > 0


def _update(t: _Training) -> float:
    """Clip, set this step's learning rates (the schedule's factor, returned), step the optimizer and scaler."""
    if t.cfg.grad_clip:
        t.scaler.unscale_(t.opt)
        torch.nn.utils.clip_grad_norm_(t.params, t.cfg.grad_clip)
    factor = t.cfg.lr_factor(t.step)
    for group, base_lr in zip(t.opt.param_groups, t.base_lrs):
        group["lr"] = base_lr * factor
    t.scaler.step(t.opt)
    t.scaler.update()
    return factor


def _validate(t: _Training) -> float | None:
    """Accuracy on val episodes (rank 0; None elsewhere); a new best writes visual.pt (e2e) and best.pt. Without
    validation (`val="none"`) every validation point is the new best: best.pt is the last checkpoint."""
    if t.cfg.val == "none":
        if t.ctx.is_main:
            t.best = {"val_accuracy": None, "val_ci95": None, "step": t.step}
            t.inp.save_best(t.run, t.step)
            _checkpoint(t, t.run.best, light=t.cfg.stage == "e2e")
        return None
    val = t.inp.val_split(t.ctx)  # e2e: every rank encodes its share of the val videos
    accuracy = None
    if t.ctx.is_main:
        result = evaluate(t.heads, val.features, val.labels, val.prompt_embeddings, val.class_names, t.val_cfg)
        accuracy = result.accuracy
        _log(t, "val", {"step": t.step, "val_accuracy": result.accuracy, "val_ci95": result.ci95})
        if result.accuracy > t.best["val_accuracy"]:
            t.best = {"val_accuracy": result.accuracy, "val_ci95": result.ci95, "step": t.step}
            t.inp.save_best(t.run, t.step)  # before best.pt: a best.pt always has its visual.pt
            _checkpoint(t, t.run.best, light=t.cfg.stage == "e2e")
    t.model.train()
    return accuracy


def _checkpoint(t: _Training, path: Path, light: bool = False) -> None:
    """last.pt (everything --resume needs), or with `light` only the heads and their config (e2e's best.pt)."""
    cfg, device = t.cfg, t.ctx.device
    data = {"model": t.heads.state_dict(), "model_config": t.heads.config.to_dict(), "train_config": asdict(cfg),
            "step": t.step, "best": t.best, "store_identity": t.store.meta.identity, "stage": cfg.stage,
            "store_location": t.run.store_location(t.store.path)}
    if not light:
        data.update(optimizer=t.opt.state_dict(), scaler=t.scaler.state_dict(), torch_rng=torch.get_rng_state(),
                    cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    **t.inp.state_dict())
    save_atomic(data, path)
