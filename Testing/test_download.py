"""``sllb download``: selection against IDC's real index, and the download path through idc-index.

IDC cannot be reached from here. The selection (which series, which folder)
is tested against the real index offline. The download itself runs through
idc-index's own ``IDCClient.download_from_manifest`` with a local stand-in for
the ``s5cmd`` program that idc-index looks up on PATH (its own discovery);
the stand-in copies placeholder files from a local folder laid out like IDC's
bucket. What that leaves unexercised is listed in the README (IDC section).
"""
from __future__ import annotations

import json
import os
import shlex
import stat
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import List

import pytest

from SarcomaLungLiverBrowserLib.cli import main
from SarcomaLungLiverBrowserLib.errors import DataError, LoadCancelled
from SarcomaLungLiverBrowserLib.formats.dicom_series import group_by_series, scan_folder
from SarcomaLungLiverBrowserLib.review.completeness import SELECTION_FILE, index_parquet_path, read_index, read_selection
from SarcomaLungLiverBrowserLib.review.download import (
    DOWNLOAD_HIERARCHY,
    MANIFEST_FILE,
    plan_download,
    run_download,
)
from test_completeness import write_placeholder

CRLM = "colorectal_liver_metastases"
LUNG = "lung_pet_ct_dx"
CRLM_PATIENT = "CRLM-CT-1085"  # the smallest CRLM patient in IDC v25: CT 21, SEG 1, AI SEG 1

STAND_IN = textwrap.dedent('''\
    #!{python}
    """A local stand-in for s5cmd: copies s3://bucket/uuid/* from $SLLB_TEST_BUCKET; never touches the network."""
    import os, shlex, shutil, sys, time
    arguments = sys.argv[1:]
    if "--help" in arguments:
        print("stand-in s5cmd")
        sys.exit(0)
    with open(os.environ["SLLB_TEST_S5CMD_LOG"], "a") as log:
        log.write("pid=%d " % os.getpid() + " ".join(arguments) + "\\n")
    manifest = arguments[arguments.index("run") + 1]
    delay = float(os.environ.get("SLLB_TEST_S5CMD_DELAY", "0"))
    for line in open(manifest):
        words = shlex.split(line)
        if not words:
            continue
        operation, source, destination = words
        assert operation == "cp" and source.startswith("s3://") and source.endswith("/*"), line
        bucket, uuid = source[len("s3://"):-2].split("/")
        folder = os.path.join(os.environ["SLLB_TEST_BUCKET"], bucket, uuid)
        os.makedirs(destination, exist_ok=True)
        for name in sorted(os.listdir(folder)):
            shutil.copyfile(os.path.join(folder, name), os.path.join(destination, name))
            time.sleep(delay)
''')


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _idc_index():
    """idc-index is pinned in requirements-lock.txt: its absence is a broken test environment, not a skip."""
    try:
        import idc_index
    except ImportError as error:
        pytest.fail(f"idc-index==0.13.4 must be installed for these tests ({error})", pytrace=False)
    return idc_index


# ---------------------------------------------------------------------- selection, offline
@pytest.fixture(scope="module")
def index_path() -> Path:
    return index_parquet_path()


def test_idc_index_uses_the_hierarchy_the_plan_assumes() -> None:
    idc_index = _idc_index()
    assert idc_index.IDCClient.DOWNLOAD_HIERARCHY_DEFAULT == DOWNLOAD_HIERARCHY


def test_plan_selects_every_series_of_the_patients_with_idc_layout_destinations(tmp_path: Path,
                                                                                index_path: Path) -> None:
    patients = ["Lung_Dx-A0001", "Lung_Dx-A0002"]
    plan = plan_download(LUNG, tmp_path / "idc", patients, index_path=index_path)
    import pyarrow.parquet as parquet

    table = parquet.read_table(index_path, columns=["collection_id", "PatientID", "SeriesInstanceUID",
                                                    "StudyInstanceUID", "Modality", "analysis_result_id"]).to_pandas()
    expected = table[(table.collection_id == LUNG) & table.PatientID.isin(patients)]
    assert sorted(plan.series.SeriesInstanceUID) == sorted(expected.SeriesInstanceUID)
    # The IDC forms this issue is about come with them: the SR boxes and BAMF's AI SEGs.
    assert {"lung_pet_ct_dx_annotations", ""} <= set(plan.series.analysis_result_id)
    for row in plan.series.itertuples():
        assert row.destination == str(tmp_path / "idc" / LUNG / row.PatientID / row.StudyInstanceUID
                                      / f"{row.Modality}_{row.SeriesInstanceUID}")
        assert row.series_aws_url.startswith("s3://") and row.series_aws_url.endswith("/*")
    assert plan.instances == int(expected.merge(read_index(collections=[LUNG], path=index_path)
                                                [["SeriesInstanceUID", "instanceCount"]]).instanceCount.sum())


def test_plan_refuses_unknown_collections_and_patients(tmp_path: Path, index_path: Path) -> None:
    with pytest.raises(DataError, match="no collection 'lung-pet-ct-dx'"):
        plan_download("lung-pet-ct-dx", tmp_path, index_path=index_path)
    with pytest.raises(DataError, match="no patient\\(s\\) Lung_Dx-Z9999"):
        plan_download(LUNG, tmp_path, ["Lung_Dx-A0001", "Lung_Dx-Z9999"], index_path=index_path)


def test_missing_only_skips_series_complete_on_disk(tmp_path: Path, index_path: Path) -> None:
    folder = tmp_path / "idc"
    plan = plan_download(CRLM, folder, [CRLM_PATIENT], index_path=index_path)
    assert len(plan.series) == 3
    complete, partial = plan.series.iloc[0], plan.series[plan.series.Modality == "CT"].iloc[0]
    if complete.SeriesInstanceUID == partial.SeriesInstanceUID:
        complete = plan.series.iloc[1]
    for row, count in ((complete, int(complete.instanceCount)), (partial, int(partial.instanceCount) - 1)):
        for number in range(1, count + 1):
            write_placeholder(Path(row.destination) / f"{number}.dcm", row, f"2.25.{number}{abs(hash(row.SeriesInstanceUID)) % 10**9}", number)
    resumed = plan_download(CRLM, folder, [CRLM_PATIENT], missing_only=True, index_path=index_path)
    assert resumed.skipped == 1
    assert sorted(resumed.series.SeriesInstanceUID) == sorted(
        set(plan.series.SeriesInstanceUID) - {complete.SeriesInstanceUID})


def test_cli_dry_run_prints_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["--no-cache", "download", CRLM, "--patients", CRLM_PATIENT, str(tmp_path / "idc"), "--dry-run"])
    assert code == 0
    out = capsys.readouterr().out
    assert "3 series" in out and out.count(str(tmp_path / "idc" / CRLM / CRLM_PATIENT)) == 3
    assert not (tmp_path / "idc").exists()  # a dry run writes nothing


def test_cli_refuses_to_install_idc_index_with_no_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    from SarcomaLungLiverBrowserLib.review.download import IDC_INDEX_REQUIREMENT

    monkeypatch.setitem(sys.modules, "idc_index", None)  # as if not installed
    code = main(["--no-cache", "download", CRLM, "--patients", CRLM_PATIENT, str(tmp_path / "idc"), "--no-install"])
    assert code == 2
    assert f"pip install {IDC_INDEX_REQUIREMENT}" in capsys.readouterr().err
    assert not (tmp_path / "idc").exists() or not any((tmp_path / "idc").rglob("*.dcm"))


# ---------------------------------------------------------------------- the download path through idc-index
@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory, index_path: Path):
    """idc-index's client using a local s5cmd stand-in, and a local 'bucket' holding one patient's series."""
    _idc_index()
    root = tmp_path_factory.mktemp("stand_in")
    bin_folder = root / "bin"
    bin_folder.mkdir()
    program = bin_folder / "s5cmd"
    program.write_text(STAND_IN.format(python=sys.executable))
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    bucket = root / "bucket"
    rows = read_index(collections=[CRLM], path=index_path, extra_columns=["series_aws_url"])
    for row in rows[rows.PatientID == CRLM_PATIENT].itertuples():
        bucket_name, uuid = row.series_aws_url[len("s3://"):-2].split("/")
        for number in range(1, int(row.instanceCount) + 1):
            write_placeholder(bucket / bucket_name / uuid / f"{number:04d}-{uuid[:8]}.dcm", row,
                              f"2.25.{number}{int(uuid.replace('-', '')[:12], 16)}", number)
    environment = {"PATH": f"{bin_folder}{os.pathsep}{os.environ['PATH']}", "SLLB_TEST_BUCKET": str(bucket),
                   "SLLB_TEST_S5CMD_LOG": str(root / "s5cmd.log")}
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    from idc_index import IDCClient

    client = IDCClient()  # looks s5cmd up on PATH: the stand-in
    assert client.s5cmdPath == str(program)
    yield SimpleNamespace(client=client, log=root / "s5cmd.log")
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_download_lands_in_the_idc_layout_and_is_verified(stand_in, tmp_path: Path, index_path: Path) -> None:
    folder = tmp_path / "idc"
    plan = plan_download(CRLM, folder, [CRLM_PATIENT], index_path=index_path)
    seen: List[float] = []
    result = run_download(plan, stand_in.client, lambda message, fraction: seen.append(fraction))
    assert result.complete and result.rows == []
    assert result.summary[0]["series_complete"] == 3
    series = group_by_series(scan_folder(folder).instances)
    assert sorted(series) == sorted(plan.series.SeriesInstanceUID)
    for row in plan.series.itertuples():
        assert len(list(Path(row.destination).glob("*.dcm"))) == row.instanceCount
    assert seen and seen[-1] == 1.0
    # idc-index ran the stand-in with IDC's endpoint and the series URLs of the plan.
    log = stand_in.log.read_text()
    assert "--no-sign-request" in log and "https://s3.amazonaws.com" in log
    assert (folder / MANIFEST_FILE).read_text().split() == [w for url in plan.series.series_aws_url
                                                            for w in ("cp", url, ".")]
    assert read_selection(folder)["selections"] == [{"collection_id": CRLM, "patients": [CRLM_PATIENT]}]
    # The collection's own discovery finds the downloaded patient.
    from SarcomaLungLiverBrowserLib.registry import open_collection

    cases = open_collection(folder).discover_cases()
    assert [case.case_id for case in cases] == [CRLM_PATIENT]


def test_cancel_keeps_what_was_fetched_and_missing_only_resumes(stand_in, tmp_path: Path, index_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "idc"
    monkeypatch.setenv("SLLB_TEST_S5CMD_DELAY", "0.4")
    plan = plan_download(CRLM, folder, [CRLM_PATIENT], index_path=index_path)

    def cancel_after_the_first_bytes(message: str, fraction: float) -> bool:
        return "MB" in message and fraction > 0

    started = len(stand_in.log.read_text().splitlines()) if stand_in.log.exists() else 0
    with pytest.raises(LoadCancelled, match="--missing-only"):
        run_download(plan, stand_in.client, cancel_after_the_first_bytes)
    # Cancelling ends the s5cmd processes this download started (the README says so).
    pids = [int(line.split()[0][len("pid="):]) for line in stand_in.log.read_text().splitlines()[started:]]
    assert pids, "the stand-in s5cmd never ran"
    for pid in pids:
        assert not _running(pid), f"s5cmd {pid} still runs after cancel"
    fetched = len(scan_folder(folder).instances)
    assert 0 < fetched < plan.instances
    monkeypatch.setenv("SLLB_TEST_S5CMD_DELAY", "0")
    resumed = plan_download(CRLM, folder, [CRLM_PATIENT], missing_only=True, index_path=index_path)
    assert 0 < len(resumed.series) <= len(plan.series)
    result = run_download(resumed, stand_in.client)
    assert result.complete, result.rows


def test_a_failed_transfer_is_reported_by_the_verification(stand_in, tmp_path: Path, index_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # idc-index logs s5cmd errors without raising; the count check afterwards is what tells the user.
    monkeypatch.setenv("SLLB_TEST_BUCKET", str(tmp_path / "empty_bucket"))
    folder = tmp_path / "idc"
    plan = plan_download(CRLM, folder, [CRLM_PATIENT], index_path=index_path)
    result = run_download(plan, stand_in.client)
    assert not result.complete
    assert [r["status"] for r in result.rows] == ["patient missing"]
