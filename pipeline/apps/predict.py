"""`mdmf predict`: classify new videos against a support folder of labelled examples (one few-shot episode).

The support folder holds one sub-folder per class with 1–5 example videos; the folder names are the classes (their
prompts are `template.format(readable name)`). Every video is decoded and encoded like a val/test video of the store
the run was trained on (`mdmf.pipeline.features.video_encoder`), then the run's best model scores each query against the class
prototypes exactly as evaluation does: one episode whose N classes are the sub-folders and whose M queries are the
given videos. Without a run the untrained OTAM baseline on raw CLIP features is used.

Probabilities are `softmax(logits)` over the support classes, logits = −(weighted total OTAM distance), i.e. the
posterior the training cross-entropy uses. They rank the classes; they are not calibrated confidences.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from mdmf.config import ModelConfig
from mdmf.pipeline.core.devices import resolve_device
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.limits import COUNT, NONNEGATIVE, check_ranges
from mdmf.pipeline.core.progress import foreign_logs, progress_bar, progress_note
from mdmf.pipeline.features.recipe import EncodeRecipe
from mdmf.pipeline.features.video_encoder import VideoEncoder
from mdmf.pipeline.runs import RunDir
from mdmf.registry import build_model

MAX_SHOT = 5  # the paper's (and this toolkit's) largest shot


# The allowed values of PredictConfig's numeric settings (`mdmf.pipeline.core.limits`); None: not given.
PREDICT_RANGES = {"frames": COUNT, "seed": NONNEGATIVE, "batch_frames": COUNT}


@dataclass
class PredictConfig:
    support: str
    queries: list[str]
    run: str | None = None  # None: the untrained OTAM baseline on the backbone below
    cache: str | None = None  # with a run: its feature store (None: the path recorded in the run)
    backbone: str | None = None  # no-run: the backbone (None: tiny); with a run: only a store's model config .json
    weights: str | None = None  # no-run: the backbone's weights; with a run: where the store's weights file is now
    frames: int = 8  # no-run mode only
    prompt_template: str = "a photo of {}"  # no-run mode only
    pps: str | None = None  # how queries get a prompt: None = the model's pps_eval_mode, or "sample" / "argmax"
    seed: int = 0  # seeds PPS sampling
    device: str = "auto"
    batch_frames: int = 256
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a numeric setting out of its range (`PREDICT_RANGES`) in one line, before any work."""
        check_ranges(self, PREDICT_RANGES)


@dataclass
class QueryPrediction:
    video: str
    ranking: list[dict]  # [{"class", "probability", "logit"}], most likely first
    prompt_class: str | None = None  # the class whose prompt PPS gave the query (MDMF), else None

    @property
    def label(self) -> str:
        return self.ranking[0]["class"]


@dataclass
class Prediction:
    model: str
    run: str | None
    classes: list[str]
    prompts: list[str]
    shots: dict[str, int]
    encoder: dict
    queries: list[QueryPrediction] = field(default_factory=list)
    probability: str = "softmax over the support classes of the logits (-total OTAM distance)"

    def to_json(self) -> dict:
        return asdict(self)


def scan_support(folder: Path) -> dict[str, list[Path]]:
    """`folder/<class>/<video>` -> {class: sorted video paths}; hidden files are skipped. Checks the shape of the
    folder (≥ 2 classes, 1–5 files each); that the files are videos is checked when they are decoded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MdmfError(f"--support {folder}: no such folder; give a folder with one sub-folder of videos per class")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    loose = [p.name for p in entries if not p.is_dir()]
    if loose:
        raise MdmfError(f"--support {folder}: {loose[0]} is not in a class sub-folder; put each class's example videos "
                        "in a sub-folder named after the class")
    classes = {p.name: sorted(f for f in p.iterdir() if not f.name.startswith(".")) for p in entries}
    for name, files in classes.items():
        if not files:
            raise MdmfError(f"--support: class folder {folder / name} is empty; put 1-{MAX_SHOT} example videos in it "
                            "or remove it")
        if len(files) > MAX_SHOT:
            raise MdmfError(f"--support: class folder {folder / name} holds {len(files)} files; few-shot models take "
                            f"1-{MAX_SHOT} examples per class, keep at most {MAX_SHOT}")
        subdirs = [f.name for f in files if f.is_dir()]
        if subdirs:
            raise MdmfError(f"--support: {folder / name / subdirs[0]} is a folder; a class folder holds video files only")
    if len(classes) < 2:
        raise MdmfError(f"--support {folder}: {len(classes)} class folder(s); few-shot prediction needs at least 2 "
                        "classes to choose between (one sub-folder per class)")
    return classes


def load_predictor(cfg: PredictConfig, device: torch.device):
    """(model in eval mode, VideoEncoder, run name or None) for `cfg`."""
    if cfg.run:
        run = RunDir(cfg.run)
        model, _ = run.load_model()
        # the support classes are the user's: only the encoder and recipe must be the run's, not the dataset
        store = run.open_store(cfg.cache, cross_dataset=True)
        recipe = EncodeRecipe.from_store(store, cfg.weights, cfg.backbone)
    else:
        recipe = EncodeRecipe(cfg.backbone or "tiny", cfg.weights, cfg.frames, prompt_template=cfg.prompt_template)
    if cfg.progress:
        progress_note(f"loading the model {recipe.backbone} (weights {recipe.weights or 'its default'}) on {device}",
                      None)
    with foreign_logs(show=cfg.progress):  # open_clip's warnings as our lines, none under --quiet
        encoder = VideoEncoder(recipe, device, cfg.batch_frames)
    if not cfg.run:
        model = build_model(ModelConfig(name="otam", dim=encoder.dim, frames=cfg.frames))
    if (model.config.dim, model.config.frames) != (encoder.dim, encoder.recipe.frames):
        raise MdmfError(f"the model expects D={model.config.dim}, T={model.config.frames} but the backbone gives "
                        f"D={encoder.dim}, T={encoder.recipe.frames}")
    return model.to(device).eval(), encoder, cfg.run


def predict(cfg: PredictConfig) -> Prediction:
    """Encode the support folder and the query videos, score the queries; see the module docstring."""
    if not cfg.queries:
        raise MdmfError("give at least one query video: --query VIDEO [VIDEO ...]")
    for q in cfg.queries:
        if not Path(q).is_file():
            raise MdmfError(f"--query {q}: file not found")
    if cfg.pps not in (None, "sample", "argmax"):
        raise MdmfError(f"--pps {cfg.pps}: use sample or argmax")
    support = scan_support(Path(cfg.support))
    device = resolve_device(cfg.device)
    model, encoder, run = load_predictor(cfg, device)
    names = list(support)
    paths = [p for name in names for p in support[name]]
    labels = torch.tensor([i for i, name in enumerate(names) for _ in support[name]])
    with progress_bar(cfg.progress, "decode + encode", total=len(paths) + len(cfg.queries), unit="videos") as advance:
        support_feats = encoder.encode_videos(paths, advance).to(device)
        query_feats = encoder.encode_videos([Path(q) for q in cfg.queries], advance).to(device)
    prompt_texts, prompts = encoder.encode_classes(names)
    by_class = [support_feats[labels.to(device) == n] for n in range(len(names))]  # (K_n, T, D): uneven shots
    with torch.no_grad():
        scores = model(by_class, prompts.to(device)[None], query_feats[None], torch.Generator().manual_seed(cfg.seed),
                       pps_mode=cfg.pps)
    logits = scores.logits[0]
    choice = None if scores.prompt_choice is None else scores.prompt_choice[0]
    probs = torch.softmax(logits.double(), dim=-1).cpu()
    result = Prediction(model=model.config.name, run=run, classes=names, prompts=prompt_texts,
                        shots={n: len(support[n]) for n in names}, encoder=encoder.describe())
    for m, video in enumerate(cfg.queries):
        order = torch.argsort(probs[m], descending=True)
        result.queries.append(QueryPrediction(
            video=str(video),
            ranking=[{"class": names[c], "probability": float(probs[m, c]), "logit": float(logits[m, c])} for c in order],
            prompt_class=names[int(choice[m])] if choice is not None else None))
    return result
