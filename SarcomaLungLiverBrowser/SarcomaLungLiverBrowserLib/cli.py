"""Command line for headless use: the same logic the Slicer module uses.

Examples::

    sllb samples output/sample_data              # write the sample collections
    sllb index output/sample_data/<collection>   # list the cases of a collection
    sllb load <collection folder> <case id> --mrb case.mrb --png case.png
    sllb demo --out output                       # all of the above on every sample collection
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence

from .errors import DataError, LoadCancelled
from .text import SPELL_OUT_UNDECODABLE

if TYPE_CHECKING:
    from .service import ReviewService

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)


def _print_findings(findings: Sequence[object]) -> None:
    for finding in findings:
        print(f"  [{finding.severity}] {finding.check}: {finding.message}")  # type: ignore[attr-defined]


def _progress_printer(verbose: bool):
    if not verbose:
        return None

    def show(message: str, fraction: float) -> None:
        print(f"  {fraction * 100:5.1f}%  {message}", file=sys.stderr)

    return show


def command_samples(arguments: argparse.Namespace) -> int:
    from .samples import generate_all

    roots = generate_all(Path(arguments.folder))
    for name, root in roots.items():
        print(f"{name}: {root}")
    return 0


def _service(arguments: argparse.Namespace, scene: object = None) -> "ReviewService":
    """The review service shared with the Slicer module, with the header cache unless ``--no-cache``."""
    from .service import DEFAULT_HEADER_CACHE, ReviewService

    return ReviewService(scene, header_cache=None if getattr(arguments, "no_cache", False) else DEFAULT_HEADER_CACHE)


def command_index(arguments: argparse.Namespace) -> int:
    from .browser import cases_table

    with _service(arguments) as service:
        collection = service.open(Path(arguments.folder), arguments.collection, arguments.annotations)
        # Indexing only reads: a store learns the case IDs when a command opens it for writing.
        cases = service.cases(_progress_printer(arguments.verbose))
    table = cases_table(cases)
    if arguments.csv:
        Path(arguments.csv).parent.mkdir(parents=True, exist_ok=True)
        from .review.report import write_csv  # atomic, and =HYPERLINK(...) from the data stays text
        write_csv(Path(arguments.csv), list(table.columns), table.astype(object).where(table.notna(), None).values)
        print(f"{len(table)} case(s) of {collection.title} written to {arguments.csv}")
    else:
        print(f"{collection.title}: {len(table)} case(s) in {collection.root}")
        print(table.to_string(index=False))
    return 0


def load_and_save(folder: Path, case_id: Optional[str], mrb: Optional[Path], png: Optional[Path],
                  collection_key: Optional[str] = None, verbose: bool = False, header_cache: bool = True,
                  annotations: Sequence[Path] = ()) -> int:
    """Load one case into a fresh headless scene, then write the bundle and snapshot.

    :param annotations: annotation folders outside ``folder`` to read too (``--annotations``).
    """
    from .browser import save_scene_bundle
    from .scene.headless import HeadlessSlicer
    from .scene.render import render_case_snapshot
    from .service import DEFAULT_HEADER_CACHE, ReviewService

    with HeadlessSlicer() as slicer_environment, \
            ReviewService(slicer_environment.scene, DEFAULT_HEADER_CACHE if header_cache else None) as service:
        collection = service.open(folder, collection_key, annotations)
        cases = service.cases()
        if not cases:
            raise DataError(folder, f"holds {collection.title} but no cases were found")
        case_id = case_id or cases[0].case_id
        loaded = service.load_case(case_id, _progress_printer(verbose))
        print(f"{collection.title} / {loaded.case.case_id}: {len(loaded.volumes)} volume(s), "
              f"{len(loaded.segmentations)} segmentation(s), {len(loaded.rois)} ROI(s), {len(loaded.tables)} table(s)")
        _print_findings(loaded.findings)
        if mrb:
            print(f"  scene bundle: {save_scene_bundle(slicer_environment.scene, mrb)}")
        if png:
            print(f"  snapshot: {render_case_snapshot(slicer_environment.scene, loaded, png)}")
    return 0


def command_load(arguments: argparse.Namespace) -> int:
    return load_and_save(Path(arguments.folder), arguments.case_id, arguments.mrb, arguments.png,
                         arguments.collection, arguments.verbose, header_cache=not arguments.no_cache,
                         annotations=arguments.annotations)


def command_demo(arguments: argparse.Namespace) -> int:
    """Generate the sample collections (if needed) and load one case of each."""
    from .samples import generate_all

    out = Path(arguments.out)
    data = out / "sample_data"
    # Generation is deterministic and quick, so the demo always starts from fresh data.
    print(f"Writing sample collections to {data}")
    roots = generate_all(data)
    failures = 0
    for name, root in roots.items():
        try:
            load_and_save(root, None, out / name / "case.mrb", out / name / "case.png", verbose=arguments.verbose,
                          header_cache=not arguments.no_cache)
        except (DataError, LoadCancelled) as error:
            failures += 1
            print(f"{name}: {error}", file=sys.stderr)
    print(f"Demo finished: {len(roots) - failures} of {len(roots)} collections loaded; outputs in {out}")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    from .review.cli import add_annotations_option  # one definition of the option for every command

    parser = argparse.ArgumentParser(prog="sllb", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="print progress")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not keep DICOM headers between runs (cache: $SLLB_INDEX_CACHE or ~/.cache)")
    subparsers = parser.add_subparsers(dest="command", required=True)

    samples = subparsers.add_parser("samples", help="write the sample collections into a folder")
    samples.add_argument("folder", type=Path)
    samples.set_defaults(func=command_samples)

    index = subparsers.add_parser("index", help="list the cases of a collection folder")
    index.add_argument("folder", type=Path)
    index.add_argument("--collection", help="collection key, if detection should be skipped")
    add_annotations_option(index)
    index.add_argument("--csv", type=Path, help="write the case table to this CSV file")
    index.set_defaults(func=command_index)

    load = subparsers.add_parser("load", help="load one case; save a scene bundle and a snapshot")
    load.add_argument("folder", type=Path)
    load.add_argument("case_id", nargs="?", help="the case to load (default: the first)")
    load.add_argument("--collection", help="collection key, if detection should be skipped")
    add_annotations_option(load)
    load.add_argument("--mrb", type=Path, help="write the scene as a Slicer scene bundle (.mrb)")
    load.add_argument("--png", type=Path, help="write the case preview (.png): three planes through each finding, 3D, legend")
    load.set_defaults(func=command_load)

    demo = subparsers.add_parser("demo", help="generate the sample collections and load a case of each")
    demo.add_argument("--out", type=Path, default=Path("output"))
    demo.set_defaults(func=command_demo)

    try:
        from .review.cli import add_subcommands
    except ImportError:  # the review tools are optional for loading
        add_subcommands = None
    if add_subcommands is not None:
        add_subcommands(subparsers)
    from .review.idc_cli import add_subcommands as add_idc_subcommands

    add_idc_subcommands(subparsers)  # completeness, download (Imaging Data Commons)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    for stream in (sys.stdout, sys.stderr):
        # A path with a byte that is not UTF-8 is printed with that byte spelled out (text.py), not a traceback.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=SPELL_OUT_UNDECODABLE)
    arguments = build_parser().parse_args(argv)
    # The header cache is set up by the review service of the commands that index (never to record a verdict).
    try:
        return int(arguments.func(arguments) or 0)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. a symbolic link loop met by a folder walk: a message naming it, no traceback
        print(f"error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2
    except LoadCancelled as error:
        print(f"cancelled: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
