"""CLIP backbones through open_clip: names, weights, preprocessing constants, and a weights hash.

* `RN50`, `ViT-B-16` with `--weights openai`: the OpenAI weights, which were trained with QuickGELU, so they are
  built as `RN50-quickgelu` / `ViT-B-16-quickgelu` (plain `ViT-B-16` with those weights only warns and is wrong).
  A local file of the same weights (`--weights PATH`) is built the same way.
* `tiny`: the small ViT shipped with mdmf (`assets/open_clip/mdmf-tiny.json`), pretrained CLIP-style on the toy
  world (`scripts/pretrain_tiny.py`); its weights file ships in `assets/`.
* A JSON model config file of open_clip's format (`--backbone my-model.json`, the model is named after the file).
* Any other open_clip model name, with an open_clip pretrained tag (from the local cache only), a local file, or
  `random` (random initialisation: plumbing only, its features carry almost nothing).
* A run folder of `mdmf train --stage e2e` as `--weights runs/<name>`: the run's base backbone and weights, with the
  visual encoder replaced by the fine-tuned one in `runs/<name>/visual.pt` (the text encoder is never fine-tuned).

Nothing here reaches for the network: a pretrained tag must already be in open_clip's cache, otherwise a clear error
says how to get the file. (open_clip itself would retry the hub for about 50 s before failing.)
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from mdmf.pipeline.core.checkpoint import load_checkpoint
from mdmf.pipeline.core.errors import MdmfError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TINY_CONFIG_DIR = ASSETS / "open_clip"
TINY_WEIGHTS = ASSETS / "mdmf-tiny-toy.pt"
BACKBONE_ALIASES = {"tiny": "mdmf-tiny", "ViT-B/16": "ViT-B-16", "RN50": "RN50", "ViT-B-16": "ViT-B-16"}
QUICKGELU_FAMILIES = ("RN50", "ViT-B-16")  # the paper's backbones: their OpenAI weights need QuickGELU
RANDOM = "random"


@dataclass(frozen=True)
class BackboneSpec:
    """What to build: the open_clip model name and where its weights come from."""

    name: str  # as the user wrote it, e.g. "RN50", "tiny"
    open_clip_name: str  # e.g. "RN50-quickgelu", "mdmf-tiny"
    weights: str  # "openai", a tag, "random", or a file path (as given)
    weights_file: Path | None  # the local file that will be loaded, None for random
    visual_file: Path | None = None  # a fine-tuned run's visual.pt, loaded over the visual encoder of `base`
    base: "BackboneSpec | None" = None  # what that run started from


@dataclass
class Backbone:
    spec: BackboneSpec
    model: torch.nn.Module  # the open_clip CLIP model
    tokenizer: object
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    dim: int
    weights_sha256: str

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """`(B, 3, S, S)` normalised images → `(B, D)` image embeddings (after pooling/projection, not normalised)."""
        return self.model.encode_image(images)

    @torch.no_grad()
    def encode_text(self, prompts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Prompt strings → `(C, D)` float32 text embeddings (not normalised)."""
        device = next(self.model.parameters()).device
        out = [
            self.model.encode_text(self.tokenizer(prompts[i : i + batch_size]).to(device)).float().cpu()
            for i in range(0, len(prompts), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def describe(self) -> dict:
        """The attributes that identify these features; stored with every feature store."""
        return {
            "backbone": self.spec.name,
            "open_clip_model": self.spec.open_clip_name,
            "weights": self.spec.weights,
            "weights_sha256": self.weights_sha256,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "dim": self.dim,
        }


def register_tiny() -> None:
    """Make the shipped `mdmf-tiny` config known to open_clip (idempotent)."""
    import open_clip

    if "mdmf-tiny" not in open_clip.list_models():
        open_clip.add_model_config(TINY_CONFIG_DIR)


def default_weights(backbone: str) -> str:
    return str(TINY_WEIGHTS) if BACKBONE_ALIASES.get(backbone) == "mdmf-tiny" else "openai"


def resolve_backbone(name: str, weights: str | None = None) -> BackboneSpec:
    """Turn a user's backbone name and weights choice into a `BackboneSpec`, checking that the files exist."""
    import open_clip

    register_tiny()
    if name.endswith(".json"):  # a user's own open_clip model config; its file name is the model name
        config = Path(name).expanduser()
        if not config.is_file():
            raise MdmfError(f"--backbone {name}: config file not found")
        open_clip.add_model_config(config)
        name = config.stem
    weights = weights or default_weights(name)
    base = BACKBONE_ALIASES.get(name, name)
    known = open_clip.list_models()
    if base not in known:
        close = [m for m in known if base.lower().split("-")[0] in m.lower()][:8]
        raise MdmfError(
            f"unknown backbone {name!r}: use tiny, RN50, ViT-B-16 or an open_clip model name"
            + (f" (close: {', '.join(close)})" if close else "")
        )
    open_clip_name = base
    if base in QUICKGELU_FAMILIES and weights != RANDOM:
        open_clip_name = f"{base}-quickgelu"

    if weights == RANDOM:
        return BackboneSpec(name, open_clip_name, weights, None)
    path = Path(weights).expanduser()
    if path.suffix or os.sep in weights or path.exists():
        if path.is_dir() and (path / RUN_VISUAL).is_file():
            return _resolve_run(name, path)
        if path.is_dir():
            raise MdmfError(f"--weights {weights}: is a folder; give the weights file (.pt, .bin or .safetensors)")
        if not path.is_file():
            raise MdmfError(f"--weights {weights}: file not found; give the path of a CLIP weights file")
        return BackboneSpec(name, open_clip_name, weights, path.resolve())
    return BackboneSpec(name, open_clip_name, weights, _cached_pretrained(open_clip_name, weights))


RUN_VISUAL = "visual.pt"  # in an e2e run folder: {"visual": state dict, "step": int, "backbone": run_base_record(...)}


def run_base_record(spec: BackboneSpec, base_sha256: str, config_file: str | None = None) -> dict:
    """What an e2e run writes about its base backbone so that `--weights runs/<name>` can rebuild it elsewhere.

    `config_file`: a JSON backbone's config copied into the run folder (its name there), so the run stands alone.
    Weights are kept as their tag (openai, random, ...) or as the absolute path of the file.
    """
    if spec.visual_file:  # a run fine-tuned from another run
        weights = str(spec.visual_file.parent)
    elif spec.weights_file is None or not (Path(spec.weights).suffix or os.sep in spec.weights):
        weights = spec.weights
    else:
        weights = str(spec.weights_file)
    return {"backbone": config_file or spec.name, "weights": weights,
            "open_clip_model": spec.open_clip_name, "weights_sha256": base_sha256}


def _read_run_base(run: Path) -> dict:
    try:
        return load_checkpoint(run / RUN_VISUAL)["backbone"]
    except Exception as err:
        raise MdmfError(f"--weights {run}: cannot read {RUN_VISUAL} ({str(err).splitlines()[0][:200]})") from None


def run_backbone(weights: str | None) -> str | None:
    """The backbone of a run folder given as weights (its name, or the path of its JSON config), else None."""
    if not weights or not (Path(weights) / RUN_VISUAL).is_file():
        return None
    base = _read_run_base(Path(weights))
    return str(Path(weights) / base["backbone"]) if base["backbone"].endswith(".json") else base["backbone"]


def base_name(name: str) -> str:
    """The model a backbone argument names: a config file's stem, aliases resolved (RN50 and its open_clip name are
    one backbone)."""
    name = Path(name).stem if name.endswith(".json") else name
    return BACKBONE_ALIASES.get(name, name)


def _resolve_run(name: str, run: Path) -> BackboneSpec:
    base = _read_run_base(run)
    arg = run_backbone(str(run))
    if base_name(name) != base_name(arg):
        raise MdmfError(f"--weights {run} fine-tuned {base_name(arg)}, but the backbone asked for is "
                        f"{base_name(name)}; leave --backbone out (the run's is used) or pass --backbone {base['backbone']}")
    spec = resolve_backbone(arg, base["weights"])
    return BackboneSpec(spec.name, spec.open_clip_name, str(run), spec.weights_file, (run / RUN_VISUAL).resolve(), spec)


def _cached_pretrained(open_clip_name: str, tag: str) -> Path:
    """The local file of an open_clip pretrained tag, looked up in the caches only (never downloads)."""
    from open_clip import pretrained

    cfg = pretrained.get_pretrained_cfg(open_clip_name, tag)
    if not cfg:
        tags = pretrained.list_pretrained_tags_by_model(open_clip_name)
        raise MdmfError(
            f"open_clip has no weights {tag!r} for {open_clip_name}"
            + (f" (it has: {', '.join(tags)})" if tags else "")
            + "; pass --weights PATH to a local file, or --weights random for plumbing tests"
        )
    candidates: list[Path] = []
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id = cfg["hf_hub"].rstrip("/")
        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(repo_id, filename)
            if isinstance(found, str):
                candidates.append(Path(found))
    if cfg.get("url"):
        clip_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clip"
        candidates.append(clip_cache / os.path.basename(cfg["url"]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = cfg.get("hf_hub") or cfg.get("url")
    raise MdmfError(
        f"the {tag} weights of {open_clip_name} are not in the local cache and this machine cannot download them: "
        f"on a machine with internet run `python -c \"import open_clip; open_clip.create_model('{open_clip_name}', "
        f"pretrained='{tag}')\"` and copy the cache, or download {where} and pass --weights PATH"
    )


def file_sha256(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def state_sha256(model: torch.nn.Module) -> str:
    """A hash of a model's parameters and buffers, for weights that do not come from a file."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_backbone(spec: BackboneSpec, device: str | torch.device = "cpu", seed: int = 0) -> Backbone:
    """Build the open_clip model for `spec` in eval mode. Random weights are seeded (same seed, same weights)."""
    import open_clip

    if spec.visual_file:
        return _load_finetuned(spec, device, seed)

    register_tiny()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = open_clip.create_model(
                spec.open_clip_name,
                pretrained=str(spec.weights_file) if spec.weights_file else None,
                device=device,
            )
        except (RuntimeError, KeyError, ValueError, EOFError, OSError, pickle.UnpicklingError) as err:
            # a file that is not a checkpoint at all (text, empty, truncated) fails inside torch.load, oddly worded
            reason = (str(err).splitlines() or [""])[0][:300] or "the file is empty or cut short"
            raise MdmfError(
                f"could not build {spec.open_clip_name} with weights {spec.weights}: {type(err).__name__}: {reason}; "
                "check the model config and that the weights file is a checkpoint of this backbone (.pt, .bin, "
                ".safetensors)"
            ) from None
    sha = file_sha256(spec.weights_file) if spec.weights_file else state_sha256(model)
    model.eval()
    pp = model.visual.preprocess_cfg
    size = pp["size"] if isinstance(pp["size"], int) else int(pp["size"][0])
    dim = int(open_clip.get_model_config(spec.open_clip_name)["embed_dim"])
    return Backbone(
        spec=spec,
        model=model,
        tokenizer=open_clip.get_tokenizer(spec.open_clip_name),
        image_size=size,
        mean=tuple(float(v) for v in pp["mean"]),
        std=tuple(float(v) for v in pp["std"]),
        interpolation=str(pp.get("interpolation", "bicubic")),
        dim=dim,
        weights_sha256=sha,
    )


def _load_finetuned(spec: BackboneSpec, device, seed: int) -> Backbone:
    """The run's base backbone with its fine-tuned visual encoder; the hash covers both."""
    import dataclasses

    base = load_backbone(spec.base, device=device, seed=seed)
    record = load_checkpoint(spec.visual_file)
    if record["backbone"]["weights_sha256"] != base.weights_sha256:
        raise MdmfError(f"{spec.visual_file}: the run was fine-tuned from base weights with sha256 "
                        f"{record['backbone']['weights_sha256'][:12]}…, but {spec.base.weights} now gives "
                        f"{base.weights_sha256[:12]}…; give the run the base weights it started from")
    base.model.visual.load_state_dict(record["visual"])
    return dataclasses.replace(base, spec=spec, weights_sha256=finetuned_sha256(base.weights_sha256, spec.visual_file))


def finetuned_sha256(base_sha256: str, visual_file: Path) -> str:
    """The weights hash of a fine-tuned backbone: its base weights' hash and the file of its visual encoder, together
    (what a store extracted with `--weights runs/<e2e run>` records)."""
    return hashlib.sha256(f"{base_sha256}+{file_sha256(Path(visual_file))}".encode()).hexdigest()
