"""`mdmf.pipeline`: everything around the model (I/O, loops, stores, runs), by stage.

Installed as `mdmf.pipeline` (the repository keeps the folder `pipeline/`). Rooms, in the order they may import each
other: a room imports only the rooms above it (and the model, `mdmf.*`); `tests/test_layout.py` checks this.

    core/       what every stage needs: errors (MdmfError, configs from dicts), devices (the one device resolver),
                isolation (process pools, crash isolation, decode-worker setup), progress, interrupt, distributed,
                checkpoint (atomic save / load), presets (`--preset NAME`, the JSON files in presets/)
    data/       videos and their labels: splits (split files), datasets (catalogue, roots, the default store path),
                toy (the built-in dataset), decode (the exact frame reader), sampling (frame indices), transforms
                (crops, normalisation), views (one video's K views -> crops: the only such path), check_data
    features/   stage one: backbones (open_clip models, weights, hashes), store (the Zarr feature store and its
                typed StoreMeta), recipe (how a store was made and how to reproduce its frames and encoder:
                ExtractConfig, EncodeRecipe, the one preprocessor builder and weights check), frames (a store's
                videos' frames, decoded or from its frame store), extract (the resumable extraction loop),
                video_encoder (features of loose video files, for predict)
    episodes/   few-shot episodes: sampler (episode i is a function of (seed, i)), scoring (planning and batching
                of evaluation: episode-independent work once, query planning; the model's forward is the one
                spelling of scoring an episode)
    evaluate/   episodic (test episodes -> accuracy ± 95 % interval, result files), predictions (per query)
    runs.py     a run folder: its files, its store, its model
    train/      stage two: loop (the training loop of short steps), inputs (the episode-input Protocol and cached
                features), e2e (FrameInput: frames through the visual encoder), frame_sources (training episodes' frames)
    apps/       what users run around that: predict, ablate, report, demo, evaluate_run (`mdmf eval` as a request),
                e2e_eval (evaluating e2e runs)

`mdmf.cli` (the folder `cli/`) only parses, calls one function here and renders (every rich table in `cli/tables.py`).
"""
