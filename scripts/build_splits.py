"""Build the shipped few-shot splits (`splits/<dataset>/`) from the reference lists of the field.

    .venv/bin/python scripts/build_splits.py [REFERENCE_DIR] [--out splits] [--ssv2-labels labels.json]

REFERENCE_DIR (default `../shared/reference-splits`, relative to the repository) holds byte-exact copies of the lists
of trx, CMN, CLIP-FSAR and CLIP-MDMF; its SOURCES.md says where each came from. The output is deterministic: running
this again gives the same bytes. The script stops with a message on any inconsistency.

* Videos and their class names: the trx / CMN lists (`<class>/<id>` for hmdb51, ucf101, kinetics100, ssv2_small;
  `<split><local id>/<id>` for ssv2_full), in their line order.
* Class order (= class id, = the class → prompt mapping): CLIP-FSAR's local class ids. For train/test the order of
  its `classnames_<split>.txt`; each id is matched to a trx/CMN class through the videos both lists share and the two
  names must agree (letters and digits, case-insensitive). For val (no CLIP-FSAR names) the order of first appearance
  in the trx/CMN list, checked to be CLIP-FSAR's val ids. For ssv2_full the OTAM local ids, in numeric order.
* ssv2_full class names: train/test from CLIP-FSAR's lists via the local id, brackets removed (`Closing [something]`
  → `Closing something`, SSv2's label form). Val: the lists give only the SSv2 label index (CLIP-MDMF's `vallist03`),
  named through the SSv2 label order in `scripts/ssv2_label_order.txt` (or the official `labels.json` given with
  `--ssv2-labels`). That table is used only after it reproduces every train/test name.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mdmf.pipeline.data.splits import SPLITS, load_splits  # noqa: E402

LABEL_ORDER = Path(__file__).resolve().parent / "ssv2_label_order.txt"

# (videos, classes) per split, as in SOURCES.md's "Counts" table (checked against it when SOURCES.md is present).
EXPECTED = {
    "hmdb51": {"train": (4280, 31), "val": (1194, 10), "test": (1292, 10)},
    "ucf101": {"train": (9154, 70), "val": (1421, 10), "test": (2745, 21)},
    "kinetics100": {"train": (6400, 64), "val": (1200, 12), "test": (2400, 24)},
    "ssv2_small": {"train": (6400, 64), "val": (1200, 12), "test": (2400, 24)},
    "ssv2_full": {"train": (67013, 64), "val": (1926, 12), "test": (2857, 24)},
}
SOURCES_MD_NAMES = {"hmdb51 (ARN)": "hmdb51", "ucf101 (ARN)": "ucf101", "kinetics100 (CMN)": "kinetics100",
                    "ssv2_small (CMN)": "ssv2_small", "ssv2_full (OTAM)": "ssv2_full"}

TRX = "github.com/tobyperrett/trx@390c20aa8ed7e309ae4949464fdcf015c4009329"
CMN = "github.com/ffmpbgrnn/CMN@23b5ef3e6defd4ee93e97131eb3c0b7926481f56"
FSAR = "github.com/alibaba-mmai-research/CLIP-FSAR@30cf0a8cf5287a56a9f37bfceb28e82be776fc5d"
MDMF = "github.com/cofly2014/CLIP-MDMF@c6ac8563a7edf4f9cc7ade822dd519677d2826c2"

DATASETS = {
    "hmdb51": dict(list="trx/{split}list03.txt", layout="class_folders", flip=True, extensions=["avi", "mp4"],
                   source=f"ARN split of HMDB51: {TRX} splits/hmdb_ARN/{{train,val,test}}list03.txt; "
                          f"class order: {FSAR} configs/projects/CLIPFSAR/hmdb51"),
    "ucf101": dict(list="trx/{split}list03.txt", layout="class_folders", flip=True, extensions=["avi", "mp4"],
                   source=f"ARN split of UCF101: {TRX} splits/ucf_ARN/{{train,val,test}}list03.txt; "
                          f"class order: {FSAR} configs/projects/CLIPFSAR/ucf101"),
    "kinetics100": dict(list="cmn-original/{split}.list", same_as="trx/{split}list03.txt", layout="class_folders", flip=True,
                        extensions=["mp4", "mkv", "webm", "avi"],
                        source=f"CMN split of Kinetics-100: {CMN} kinetics-100/{{train,val,test}}.list (= trx "
                               f"splits/kinetics_CMN); class order: {FSAR} configs/projects/CLIPFSAR/kinetics100"),
    "ssv2_small": dict(list="cmn-original/{split}.list", same_as="trx/{split}list03.txt", layout="flat", flip=False, extensions=["webm", "mp4"],
                       source=f"CMN split of SSv2 (smsm-100): {CMN} smsm-100/{{train,val,test}}.list (= trx "
                              f"splits/ssv2_CMN); class order: {FSAR} configs/projects/CLIPFSAR/ssv2_small"),
    "ssv2_full": dict(list="trx/{split}list07.txt", layout="flat", flip=False, extensions=["webm", "mp4"],
                      source=f"OTAM split of SSv2: {TRX} splits/ssv2_OTAM/{{train,val,test}}list07.txt; train/test "
                             f"class names: {FSAR} configs/projects/CLIPFSAR/ssv2_full; val class names: SSv2 label "
                             f"index from {MDMF} splits/ssv2_OTAM/vallist03.txt + the SSv2 label order"),
}


class BuildError(Exception):
    pass


def fail(message: str) -> None:
    raise BuildError(message)


def name_key(name: str) -> str:
    """Spelling-insensitive identity of a class name: `Blow DryHair` = `BlowDryHair`, `draw_sword` = `draw sword`."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def strip_brackets(name: str) -> str:
    return name.replace("[", "").replace("]", "")


def lines(path: Path) -> list[str]:
    if not path.is_file():
        fail(f"{path}: missing")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_named_list(path: Path) -> list[tuple[str, str]]:
    """trx / CMN lists: `<class>/<video id>` per line."""
    out = []
    for number, line in enumerate(lines(path), 1):
        parts = line.split("/")
        if len(parts) != 2 or not all(parts):
            fail(f"{path}:{number}: expected <class>/<video id>: {line!r}")
        out.append((parts[0], parts[1]))
    return out


def read_local_id_list(path: Path, split: str) -> list[tuple[int, str]]:
    """CLIP-FSAR / OTAM lists: `<split><local id>/<video id>` or `<split><local id>//<dir>/<class>/<stem>.<ext>`."""
    out = []
    for number, line in enumerate(lines(path), 1):
        match = re.fullmatch(rf"{split}(\d+)/(/.+|[^/]+)", line)
        if not match:
            fail(f"{path}:{number}: expected {split}<id>/<video>: {line!r}")
        rest = match.group(2)
        video = rest.rsplit("/", 1)[-1].rsplit(".", 1)[0] if rest.startswith("/") else rest
        out.append((int(match.group(1)), video))
    return out


def check_unique_videos(videos: list[tuple[str, str]], where: str) -> None:
    dups = [v for v, n in Counter(v for _, v in videos).items() if n > 1]
    if dups:
        fail(f"{where}: {len(dups)} video id(s) listed more than once, e.g. {dups[0]!r}")


def local_id_classes(fsar: list[tuple[int, str]], class_of: dict[str, str], where: str) -> dict[int, str]:
    """Local class id → trx/CMN class, from the videos both lists share; every shared video must agree."""
    votes: dict[int, Counter] = defaultdict(Counter)
    for local, video in fsar:
        if video in class_of:
            votes[local][class_of[video]] += 1
    mapping = {}
    for local in sorted({lid for lid, _ in fsar}):
        if len(votes[local]) != 1:
            fail(f"{where}: local class id {local} maps to {len(votes[local])} trx/CMN classes {dict(votes[local])}")
        mapping[local] = next(iter(votes[local]))
    if sorted(mapping) != list(range(len(mapping))):
        fail(f"{where}: local class ids are not 0..{len(mapping) - 1}")
    return mapping


def build_named(ref: Path, dataset: str) -> tuple[dict, dict, list[str]]:
    """hmdb51, ucf101, kinetics100, ssv2_small: names from the trx/CMN list, order from CLIP-FSAR."""
    spec = DATASETS[dataset]
    videos, classes, notes = {}, {}, []
    for split in SPLITS:
        path = ref / dataset / spec["list"].format(split=split)
        entries = read_named_list(path)
        check_unique_videos(entries, str(path))
        if "same_as" in spec and lines(ref / dataset / spec["same_as"].format(split=split)) != lines(path):
            fail(f"{ref / dataset / spec['same_as'].format(split=split)} differs from {path} (SOURCES.md: identical)")
        class_of = dict((v, c) for c, v in entries)
        first_seen = list(dict.fromkeys(c for c, _ in entries))
        fsar_path = ref / dataset / "clip-fsar" / f"{split}_few_shot.txt"
        mapping = local_id_classes(read_local_id_list(fsar_path, split), class_of, str(fsar_path))
        if sorted(mapping.values()) != sorted(first_seen):
            fail(f"{fsar_path}: its classes differ from those of {path}")
        names_path = ref / dataset / "clip-fsar" / f"classnames_{split}.txt"
        if names_path.exists():
            names = lines(names_path)
            if len(names) != len(mapping):
                fail(f"{names_path}: {len(names)} names for {len(mapping)} local class ids")
            for local, name in enumerate(names):
                if name_key(strip_brackets(name)) != name_key(mapping[local]):
                    fail(f"{names_path}:{local + 1}: {name!r} is id {local}, whose videos are {mapping[local]!r} in {path}")
            order = [mapping[i] for i in range(len(names))]
            how = f"CLIP-FSAR classnames_{split}.txt"
        else:
            order = first_seen
            if order != [mapping[i] for i in range(len(mapping))]:
                fail(f"{path}: order of first appearance differs from the local class ids of {fsar_path}")
            how = f"first appearance in the list (= CLIP-FSAR {split} ids)"
        shared = sum(1 for _, v in read_local_id_list(fsar_path, split) if v in class_of)
        notes.append(f"{split}: class order from {how}; {shared}/{len(entries)} videos also in the CLIP-FSAR list")
        videos[split], classes[split] = entries, order
    return videos, classes, notes


def read_label_order(labels_json: Path | None) -> list[str] | None:
    """SSv2 class names by label index: the official labels.json if given, else scripts/ssv2_label_order.txt."""
    if labels_json is not None:
        raw = json.loads(labels_json.read_text(encoding="utf-8"))
        order = [None] * len(raw)
        for name, index in raw.items():
            order[int(index)] = name
        if None in order:
            fail(f"{labels_json}: label indices are not 0..{len(raw) - 1}")
        return order
    if not LABEL_ORDER.exists():
        return None
    return [line for line in LABEL_ORDER.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]


def build_ssv2_full(ref: Path, labels_json: Path | None) -> tuple[dict, dict, list[str]]:
    """OTAM lists give `<split><local id>/<video>`; names via CLIP-FSAR (train/test) and the SSv2 label index (val)."""
    base = ref / "ssv2_full"
    label_order = read_label_order(labels_json)
    label_source = str(labels_json or LABEL_ORDER.name)
    videos, classes, notes, checked = {}, {}, [], 0
    for split in SPLITS:
        path = base / f"trx/{split}list07.txt"
        entries = read_local_id_list(path, split)
        check_unique_videos([(str(c), v) for c, v in entries], str(path))
        fsar_path = base / f"clip-fsar/{split}_few_shot.txt"
        if fsar_path.read_bytes() != path.read_bytes():
            fail(f"{fsar_path} differs from {path} (SOURCES.md says byte-identical)")
        label_path = base / f"clip-mdmf/{split}list03.txt"
        label_of_video = {v: int(c) for c, v in read_named_list(label_path)}
        labels: dict[int, set[int]] = defaultdict(set)
        for local, video in entries:
            if video not in label_of_video:
                fail(f"{label_path}: video {video} of {path} is missing")
            labels[local].add(label_of_video[video])
        n = len(labels)
        if sorted(labels) != list(range(n)) or any(len(s) != 1 for s in labels.values()):
            fail(f"{label_path}: the local class ids of {path} do not map one-to-one to SSv2 labels")
        ssv2_label = [labels[i].pop() for i in range(n)]
        names_path = base / f"clip-fsar/classnames_{split}.txt"
        if names_path.exists():
            names = [strip_brackets(x) for x in lines(names_path)]
            if len(names) != n:
                fail(f"{names_path}: {len(names)} names for {n} local class ids")
            if label_order is not None:
                for i, name in enumerate(names):
                    if label_order[ssv2_label[i]] != name:
                        fail(f"{label_source}: label {ssv2_label[i]} is {label_order[ssv2_label[i]]!r}, "
                             f"but {names_path}:{i + 1} names that class {name!r}")
                checked += len(entries)
            how = f"CLIP-FSAR classnames_{split}.txt (brackets removed)"
        elif label_order is not None:
            names = [label_order[label] for label in ssv2_label]
            how = f"SSv2 labels {ssv2_label} named by {label_source}"
        else:
            names = [f"SSv2 label {label}" for label in ssv2_label]
            how = f"PLACEHOLDERS: SSv2 labels {ssv2_label}, no label-order table (give --ssv2-labels labels.json)"
            print(f"warning: ssv2_full {split} class names are placeholders", file=sys.stderr)
        notes.append(f"{split}: {how}")
        videos[split] = [(names[local], video) for local, video in entries]
        classes[split] = names
    if label_order is not None:
        notes.append(f"{label_source} reproduces the CLIP-FSAR name of all {checked} train/test videos")
    return videos, classes, notes


def check_sources_md(ref: Path) -> None:
    """The counts table of SOURCES.md must equal EXPECTED (so that neither drifts silently)."""
    path = ref / "SOURCES.md"
    if not path.exists():
        fail(f"{path}: missing (the counts to verify against are listed there)")
    seen = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in SOURCES_MD_NAMES:
            dataset = SOURCES_MD_NAMES[cells[0]]
            counts = [int(c) for c in cells[1:4]]
            class_counts = [int(c) for c in cells[4].split("/")]
            want = EXPECTED[dataset]
            if counts != [want[s][0] for s in SPLITS] or class_counts != [want[s][1] for s in SPLITS]:
                fail(f"{path}: counts of {dataset} are {counts} / {class_counts}, this script expects {want}")
            seen.add(dataset)
    if seen != set(EXPECTED):
        fail(f"{path}: no counts row for {sorted(set(EXPECTED) - seen)}")


def write_dataset(out: Path, dataset: str, videos: dict, classes: dict) -> None:
    spec = DATASETS[dataset]
    for split in SPLITS:
        want_videos, want_classes = EXPECTED[dataset][split]
        if (len(videos[split]), len(classes[split])) != (want_videos, want_classes):
            fail(f"{dataset} {split}: {len(videos[split])} videos / {len(classes[split])} classes, "
                 f"SOURCES.md says {want_videos} / {want_classes}")
        if set(classes[split]) != {c for c, _ in videos[split]}:
            fail(f"{dataset} {split}: the listed classes and the classes of the videos differ")
        for name in classes[split]:
            if "\t" in name or "\n" in name or name.startswith("#") or name != name.strip():
                fail(f"{dataset} {split}: class name {name!r} cannot be written in the split format")
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        common = set(classes[a]) & set(classes[b])
        if common:
            fail(f"{dataset}: classes in both {a} and {b}: {sorted(common)[:3]}")
    folder = out / dataset
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        (folder / f"{split}.txt").write_text("".join(f"{c}\t{v}\n" for c, v in videos[split]), encoding="utf-8")
        (folder / f"{split}_classes.txt").write_text("".join(f"{c}\n" for c in classes[split]), encoding="utf-8")
    info = {"name": dataset, "layout": spec["layout"], "flip": spec["flip"], "extensions": spec["extensions"],
            "source": spec["source"]}
    (folder / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    # Read back with the package's own reader: the files must load exactly as built.
    loaded = load_splits(folder)
    for split in SPLITS:
        if [(e.class_name, e.video_id) for e in loaded.entries[split]] != list(videos[split]) \
                or loaded.classes[split] != classes[split]:
            fail(f"{folder}: {split} does not read back as written")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", nargs="?", type=Path, default=REPO.parent / "shared" / "reference-splits",
                        help="folder of reference lists (default: ../shared/reference-splits from the repository)")
    parser.add_argument("--out", type=Path, default=REPO / "splits", help="output folder (default: splits/)")
    parser.add_argument("--ssv2-labels", type=Path, default=None,
                        help="the official SSv2 labels.json ({name: index}) to name the ssv2_full val classes "
                             f"(default: scripts/{LABEL_ORDER.name})")
    parser.add_argument("--dataset", action="append", choices=sorted(DATASETS), help="only these (repeatable)")
    args = parser.parse_args(argv)
    try:
        if not args.reference.is_dir():
            fail(f"{args.reference}: no such folder of reference lists")
        check_sources_md(args.reference)
        for dataset in args.dataset or list(DATASETS):
            if dataset == "ssv2_full":
                videos, classes, notes = build_ssv2_full(args.reference, args.ssv2_labels)
            else:
                videos, classes, notes = build_named(args.reference, dataset)
            write_dataset(args.out, dataset, videos, classes)
            counts = ", ".join(f"{s} {len(videos[s])}/{len(classes[s])}" for s in SPLITS)
            print(f"{dataset}: {counts} (videos/classes) -> {args.out / dataset}")
            for note in notes:
                print(f"  {note}")
    except BuildError as err:
        print(f"build_splits: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
