"""`mdmf predict`: a support folder of generated videos, a run trained on a store of the same micro backbone."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import MICRO_CONFIG
from mdmf.config import ModelConfig
from mdmf.registry import build_model
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.apps.predict import PredictConfig, predict, scan_support
from mdmf.pipeline.features.store import FeatureStore
from mdmf.pipeline.features.recipe import EncodeRecipe
from mdmf.pipeline.features.video_encoder import VideoEncoder
from videogen import write_video

MDMF = [sys.executable, "-m", "mdmf"]
REPO = Path(__file__).resolve().parents[1]
MICRO = dict(backbone=str(MICRO_CONFIG), weights="random", progress=False, device="cpu")


@pytest.fixture(scope="module")
def micro_run(small_dataset, tmp_path_factory):
    """(store, run dir): the small dataset extracted with the micro backbone, an MDMF head trained 2 steps on it."""
    from mdmf.pipeline.features.extract import run_extract
    from mdmf.pipeline.features.recipe import ExtractConfig
    from mdmf.pipeline.train.loop import TrainConfig, train

    root, splits = small_dataset
    base = tmp_path_factory.mktemp("predict")
    run_extract(ExtractConfig(dataset="small", root=str(root), splits_dir=str(splits), out=str(base / "store"),
                              backbone=str(MICRO_CONFIG), weights="random", workers=0, progress=False))
    train(TrainConfig(store=str(base / "store"), run_dir=str(base / "run"),
                           model={"name": "mdmf", "heads": 4, "mlp_dim": 32}, way=2, shot=1, queries=1, steps=2,
                           episodes_per_step=2, batch_episodes=2, val_every=2, val_episodes=10, progress=False,
                           device="cpu"))
    return FeatureStore.open(base / "store"), base / "run"


def support_from_store(store, folder: Path, per_class: dict[str, list[int]]) -> Path:
    """Copy test-split videos of the store into `folder/<class>/`, the given video numbers per class."""
    ids, paths = store.strings("test", "video_ids"), store.strings("test", "paths")
    for name, numbers in per_class.items():
        for j in numbers:
            src = Path(paths[ids.index(f"{name}_test_{j}")])
            (folder / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, folder / name / src.name)
    return folder


def test_videos_are_encoded_exactly_like_the_stores_test_videos(micro_run):
    store, _ = micro_run
    encoder = VideoEncoder(EncodeRecipe.from_store(store))
    data = store.load("test")
    paths = [Path(p) for p in store.strings("test", "paths")]
    feats = encoder.encode_videos(paths)
    torch.testing.assert_close(feats, torch.as_tensor(data.features[:, 0]).float(), rtol=0, atol=2e-3)
    prompts, emb = encoder.encode_classes(data.class_names)
    assert prompts == data.prompts
    torch.testing.assert_close(emb, torch.as_tensor(data.prompt_embeddings), rtol=1e-5, atol=1e-5)


def test_predict_with_a_run_scores_like_the_model_on_the_store(micro_run, tmp_path):
    store, run = micro_run
    support = support_from_store(store, tmp_path / "support", {"PlayingPiano": [0], "ride_bike": [0]})
    query_names = ["PlayingPiano_test_1", "ride_bike_test_1", "ride_bike_test_2"]
    ids, paths = store.strings("test", "video_ids"), store.strings("test", "paths")
    queries = [paths[ids.index(q)] for q in query_names]
    result = predict(PredictConfig(support=str(support), queries=queries, run=str(run), progress=False, device="cpu"))
    assert result.model == "mdmf" and result.classes == ["PlayingPiano", "ride_bike"]
    assert result.prompts == ["a photo of playing piano", "a photo of ride bike"]
    assert result.shots == {"PlayingPiano": 1, "ride_bike": 1}
    for q in result.queries:
        probs = [r["probability"] for r in q.ranking]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-9
        assert q.prompt_class in result.classes

    # the same episode through the model's own forward, on the store's features
    from mdmf.pipeline.runs import RunDir

    model, _ = RunDir(run).load_model()
    model.eval()
    data = store.load("test")
    row = {vid: i for i, vid in enumerate(data.video_ids)}
    feats = torch.as_tensor(data.features[:, 0]).float()
    s = feats[[row["PlayingPiano_test_0"], row["ride_bike_test_0"]]][None, :, None]  # (1, 2, 1, T, D)
    q = feats[[row[n] for n in query_names]][None]  # (1, 3, T, D)
    with torch.no_grad():
        scores = model(s, torch.as_tensor(data.prompt_embeddings)[None], q, generator=torch.Generator().manual_seed(0))
    expected = torch.softmax(scores.logits[0].double(), -1)
    for m, qp in enumerate(result.queries):
        got = {r["class"]: r["probability"] for r in qp.ranking}
        torch.testing.assert_close(torch.tensor([got["PlayingPiano"], got["ride_bike"]], dtype=torch.float64),
                                   expected[m], rtol=0, atol=1e-3)
        assert qp.prompt_class == result.classes[int(scores.prompt_choice[0, m])]


def test_recipe_of_a_store_needs_its_config_file_and_its_weights(micro_run):
    store, _ = micro_run

    class Renamed:  # the same store, as a fresh process would see a model config that open_clip does not know
        path, meta = store.path, {**store.meta, "backbone": {**store.meta["backbone"], "backbone": "mdmf-nano"}}

    with pytest.raises(MdmfError, match="pass --backbone PATH/mdmf-nano.json"):
        EncodeRecipe.from_store(Renamed())
    with pytest.raises(MdmfError, match="mdmf-nano.json"):
        EncodeRecipe.from_store(Renamed(), config_file=str(MICRO_CONFIG))
    recipe = EncodeRecipe.from_store(store, config_file=str(MICRO_CONFIG))
    assert recipe.backbone == str(MICRO_CONFIG) and recipe.frames == 8 and recipe.prompt_template == "a photo of {}"
    micro = VideoEncoder(EncodeRecipe(str(MICRO_CONFIG), "random")).backbone
    with pytest.raises(MdmfError, match="not the ones the run's feature store was made with"):
        VideoEncoder(EncodeRecipe.from_store(store), backbone=dataclasses.replace(micro, weights_sha256="0" * 64))
    assert VideoEncoder(EncodeRecipe.from_store(store), backbone=micro).dim == 16


@pytest.mark.parametrize("name", ["otam", "mdmf"])
def test_unequal_shots_average_each_class_over_its_own_examples(name):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, dim=16, heads=4, mlp_dim=32, pps_eval_mode="argmax")).eval()
    g = torch.Generator().manual_seed(1)
    support, query, prompts = torch.randn(3, 8, 16, generator=g), torch.randn(4, 8, 16, generator=g), torch.randn(3, 16, generator=g)
    with torch.no_grad():
        one = model(list(support[:, None]), prompts[None], query[None], torch.Generator(), pps_mode="argmax").logits[0]
        # a class given the same video twice has the same prototype as with it once
        twice = model([support[[0, 0]], support[1:2], support[2:3]], prompts[None], query[None], torch.Generator(),
                      pps_mode="argmax").logits[0]
    torch.testing.assert_close(one, twice, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        full = model(support[None, :, None], prompts[None], query[None]).logits[0]
    torch.testing.assert_close(one, full, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("support")
    for cls, lengths in {"brush_hair": [20, 26], "JumpRope": [18]}.items():
        for j, n in enumerate(lengths):
            write_video(base / "good" / cls / f"v{j}.mp4", n)
    write_video(base / "query.mp4", 30)
    return base


def bad_copy(folders, tmp_path) -> Path:
    target = tmp_path / "support"
    shutil.copytree(folders / "good", target)
    return target


def test_bad_support_folders_are_one_line_user_errors(folders, tmp_path):
    query = [str(folders / "query.mp4")]
    support = bad_copy(folders, tmp_path)
    (support / "walk").mkdir()
    with pytest.raises(MdmfError, match="class folder .*walk is empty"):
        predict(PredictConfig(str(support), query, **MICRO))
    (support / "walk").rmdir()
    (support / "JumpRope" / "notes.txt").write_text("not a video")
    with pytest.raises(MdmfError, match=r"notes\.txt: not a readable video"):
        predict(PredictConfig(str(support), query, **MICRO))
    shutil.rmtree(support / "JumpRope")
    with pytest.raises(MdmfError, match="at least 2 classes"):
        predict(PredictConfig(str(support), query, **MICRO))
    with pytest.raises(MdmfError, match="missing.mp4: file not found"):
        predict(PredictConfig(str(folders / "good"), [str(tmp_path / "missing.mp4")], **MICRO))
    (support / "loose.mp4").write_bytes(b"")
    with pytest.raises(MdmfError, match="loose.mp4 is not in a class sub-folder"):
        scan_support(support)


def test_no_run_is_the_otam_baseline(folders):
    result = predict(PredictConfig(str(folders / "good"), [str(folders / "query.mp4")] * 2, **MICRO))
    assert result.model == "otam" and result.run is None and result.shots == {"JumpRope": 1, "brush_hair": 2}
    assert result.queries[0].ranking == result.queries[1].ranking and result.queries[0].prompt_class is None
    assert result.encoder["backbone"] == "mdmf-micro" and result.encoder["frames"] == 8


def test_cli_json_and_tables(folders, micro_run):
    store, run = micro_run
    base = MDMF + ["predict", "--support", str(folders / "good")]
    micro = ["--backbone", str(MICRO_CONFIG), "--weights", "random"]
    proc = subprocess.run(base + ["--query", str(folders / "query.mp4"), str(folders / "query.mp4"), *micro, "--json", "-"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # standard output is the JSON only; the tables went to standard error
    assert "untrained OTAM baseline" in proc.stderr and "JumpRope" in proc.stderr
    assert len(data["queries"]) == 2 and data["model"] == "otam" and "softmax" in data["probability"]
    assert {r["class"] for r in data["queries"][0]["ranking"]} == {"JumpRope", "brush_hair"}

    # a store made from a model config file records only the model's name: a fresh process needs the file again
    with_run = base + ["--query", str(folders / "query.mp4"), "--run", str(run), "--quiet"]
    proc = subprocess.run(with_run + ["--backbone", str(MICRO_CONFIG)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "brush_hair" in proc.stdout and "%" in proc.stdout and "PPS prompt" in proc.stdout
    # the video on a line of its own, whole (a table title wrapped a long path mid-phrase), the prompt explained
    video_line = next(line for line in proc.stdout.splitlines() if "query.mp4" in line)
    assert str(folders / "query.mp4") in video_line and "PPS prompt:" in video_line
    assert "is not the prediction" in " ".join(proc.stdout.split())
