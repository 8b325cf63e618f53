"""`mdmf cache info|export|verify`: inspect, convert and check feature stores."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mdmf.cli.app import Command, app, check_json_target, human_console, json_option, write_json

cache_app = typer.Typer(help="Inspect and export feature stores.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("info", cls=Command)
def info(path: Path = typer.Argument(..., metavar="PATH", help="store folder"),
         json_path: str = json_option("what the store holds")) -> None:
    """What a store holds: backbone, weights hash, sampling, counts per split (all shards), failures."""
    from mdmf.pipeline.features.store import FeatureStore, store_info
    from mdmf.cli.tables import print_store_info

    check_json_target(json_path)
    data = store_info(FeatureStore.open(path))
    write_json(data, json_path)
    print_store_info(data, human_console(json_path))


@cache_app.command("export", cls=Command)
def export(path: Path = typer.Argument(..., metavar="PATH", help="store folder"),
           to: Path = typer.Option(..., "--to", help="the HDF5 file to write (an earlier export is replaced)"),
           force: bool = typer.Option(False, "--force", help="replace --to even if it is not an earlier export")) -> None:
    """Write an HDF5 copy of a store (h5py), for tools that read HDF5."""
    from mdmf.pipeline.features.store import FeatureStore, export_h5

    out = export_h5(FeatureStore.open(path), to, force=force)
    Console().print(f"wrote {out}")


@cache_app.command("verify", cls=Command)
def verify(path: Path = typer.Argument(..., metavar="PATH", help="store folder"),
           repair: bool = typer.Option(False, "--repair", help="mark damaged units pending: `mdmf extract` (the "
                                                               "same command) then redoes exactly those"),
           record: bool = typer.Option(False, "--record", help="a store made before digests: record digests of its "
                                                               "data as it is now (damaged units: marked pending)"),
           json_path: str = json_option("the verification report")) -> None:
    """Check every finished unit of a store against its digests (missing, truncated or altered chunks); exit 1 when
    damage is left (with --repair: only what cannot be repaired by extracting again)."""
    from mdmf.pipeline.features.integrity import verify_store
    from mdmf.pipeline.features.store import FeatureStore
    from mdmf.cli.tables import print_verify_report

    check_json_target(json_path)
    store = FeatureStore.open(path, mode="r+" if repair or record else "r")
    data = verify_store(store, repair=repair, record_missing=record)
    write_json(data, json_path)
    print_verify_report(data, human_console(json_path))
    if not data["ok"]:
        raise typer.Exit(1)
