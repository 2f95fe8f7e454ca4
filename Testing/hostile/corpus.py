"""Corrupted variants of the sample collections, each with one defect, generated at test time.

Every :class:`Entry` names a *base* (one case of one sample collection, in
one on-disk layout), a mutation applied to a copy of that base, and what a
user must see: the load refused with a :class:`~SarcomaLungLiverBrowserLib.errors.DataError`
(``"error"``), the case loaded with the defect reported as a finding
(``"finding"``), either of the two (``"either"``), or a harmless oddity that
may load silently (``"tolerated"``). A mutation returns the names a message
about the defect must mention (the damaged file's name, sometimes its folder).

Copies are made with hard links, so a mutation must replace a file (unlink,
then write) rather than change it in place; :func:`replace_bytes` and
:func:`save_dataset` do that.
"""
from __future__ import annotations

import gzip
import io
import itertools
import os
import shutil
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pydicom
from pydicom.dataelem import DataElement

from SarcomaLungLiverBrowserLib.formats.dicom_series import group_by_series, scan_folder

__all__ = ["Entry", "Base", "BASES", "ENTRIES", "build_bases", "materialise", "replace_bytes", "save_dataset"]


# ---------------------------------------------------------------------------------------------- bases
@dataclass(frozen=True)
class BaseSpec:
    """One case of a sample collection: the generator module, its folder, the case and what to drop."""

    key: str
    module: str
    folder: str
    case_id: str
    drop: Tuple[str, ...]
    image_modality: str


BASE_SPECS: Dict[str, BaseSpec] = {spec.key: spec for spec in (
    BaseSpec("crlm_nbia", "crlm", "Colorectal-Liver-Metastases", "CRLM-CT-1001", ("CRLM-CT-1002", "CRLM-CT-1003"), "CT"),
    BaseSpec("crlm_idc", "crlm", "Colorectal-Liver-Metastases", "CRLM-CT-1003", ("CRLM-CT-1001", "CRLM-CT-1002"), "CT"),
    BaseSpec("lung_nbia", "lung_pet_ct_dx", "Lung-PET-CT-Dx", "Lung_Dx-A0001",
             ("Lung_Dx-B0002", "B0002", "Lung_Dx-G0003", "G0003"), "CT"),
    BaseSpec("lung_idc", "lung_pet_ct_dx", "Lung-PET-CT-Dx", "Lung_Dx-B0002",
             ("Lung_Dx-A0001", "A0001", "Lung_Dx-G0003", "G0003"), "PT"),
    BaseSpec("ispy1", "ispy1", "ISPY1-Tumor-SEG-Radiomics", "ISPY1_1002", ("ISPY1_1005", "ISPY1_1010"), ""),
    BaseSpec("sts_nbia", "soft_tissue_sarcoma", "soft_tissue_sarcoma", "STS_001", ("STS_002",), "MR"),
    BaseSpec("sts_idc", "soft_tissue_sarcoma", "soft_tissue_sarcoma", "STS_002", ("STS_001",), "CT"),
    BaseSpec("hermessi", "hermessi", "hermessi", "STS_003", (), "MR"),
    # ISPY1 in DICOM (IDC layout, GE style: three DCE phases in one series, SEGs on a map and on the DCE series).
    BaseSpec("ispy1dicom_idc", "ispy1_dicom", "ISPY1-DICOM", "ISPY1_1002", ("ISPY1_1005",), "MR"),
)}


@dataclass
class Base:
    """A generated single-case collection and an index of its files (paths relative to its root)."""

    spec: BaseSpec
    root: Path
    image_series: List[str] = field(default_factory=list)  # one image series, sorted along its normal
    other_series: List[str] = field(default_factory=list)  # one slice of another image series, if any
    segs: List[str] = field(default_factory=list)
    rtstructs: List[str] = field(default_factory=list)


def _dropped(name: str, tokens: Sequence[str]) -> bool:
    return any(name == token or name.startswith(token + ".") for token in tokens)


def _trim(root: Path, tokens: Sequence[str]) -> None:
    for directory, folders, files in os.walk(root, topdown=True):
        for name in list(folders):
            if _dropped(name, tokens):
                shutil.rmtree(Path(directory) / name)
                folders.remove(name)
        for name in files:
            if _dropped(name, tokens):
                (Path(directory) / name).unlink()
    shutil.rmtree(root / "_ground_truth", ignore_errors=True)


def _index(base: Base) -> None:
    spec = base.spec
    scan = scan_folder(base.root)
    instances = [i for i in scan.instances if spec.key != "hermessi" or spec.case_id in i.path.name]
    relative = lambda instance: instance.path.relative_to(base.root).as_posix()  # noqa: E731
    base.segs = sorted(relative(i) for i in instances if i.modality == "SEG")
    base.rtstructs = sorted(relative(i) for i in instances if i.modality == "RTSTRUCT")
    series = [members for members in group_by_series(instances).values()
              if members[0].modality == spec.image_modality and len(members) > 2]
    series.sort(key=lambda members: (members[0].series_number or 0, members[0].series_instance_uid))
    if series:
        normal = np.cross(series[0][0].image_orientation[:3], series[0][0].image_orientation[3:])
        ordered = sorted(series[0], key=lambda i: float(np.dot(i.image_position, normal)))
        base.image_series = [relative(i) for i in ordered]
    others = [members for members in group_by_series(instances).values()
              if members[0].modality in ("CT", "PT", "MR") and members[0].series_instance_uid
              != (series[0][0].series_instance_uid if series else "")]
    if others:
        base.other_series = [relative(others[0][0])]


def build_bases(parent: Path) -> Dict[str, Base]:
    """Generate every sample collection once and cut one single-case base per :data:`BASE_SPECS` entry."""
    from SarcomaLungLiverBrowserLib.samples import generate_all

    generated = parent / "generated"
    roots = generate_all(generated)
    bases = {}
    for spec in BASE_SPECS.values():
        root = parent / "bases" / spec.key / spec.folder
        shutil.copytree(roots[spec.module], root)
        _trim(root, spec.drop)
        base = Base(spec, root)
        _index(base)
        bases[spec.key] = base
    return bases


# ---------------------------------------------------------------------------------------------- helpers
def replace_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` as ``path`` without touching the hard-linked original."""
    path = Path(path)
    if path.exists():
        path.unlink()
    path.write_bytes(data)


def save_dataset(dataset: pydicom.Dataset, path: Path) -> None:
    path = Path(path)
    if path.exists():
        path.unlink()
    dataset.save_as(str(path))


def _edit(path: Path, change: Callable[[pydicom.Dataset], None]) -> None:
    dataset = pydicom.dcmread(str(path))
    change(dataset)
    save_dataset(dataset, path)


def _raw(dataset: pydicom.Dataset, keyword: str, vr: str, text: bytes) -> None:
    """Set an element to raw bytes (so invalid values such as ``nan`` reach the file as written)."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    dataset[tag] = DataElement(tag, vr, text)


def _pixel_data_offset(data: bytes) -> int:
    return data.rfind(b"\xe0\x7f\x10\x00")


@dataclass
class Context:
    """What a mutation sees: the copied collection and the base's index."""

    root: Path
    base: Base
    work: Path  # scratch folder outside the collection

    def path(self, relative: str) -> Path:
        return self.root / relative

    def slices(self) -> List[Path]:
        return [self.path(relative) for relative in self.base.image_series]

    def middle(self) -> Path:
        slices = self.slices()
        return slices[len(slices) // 2]


Mutation = Callable[[Context], List[str]]


@dataclass(frozen=True)
class Entry:
    """One corrupted input: a base, a mutation and the outcome a user must get."""

    id: str
    base: str
    mutate: Mutation
    expect: str  # "error" | "finding" | "either" | "tolerated"

    @property
    def case_id(self) -> str:
        return BASE_SPECS[self.base].case_id


def materialise(entry: Entry, bases: Dict[str, Base], work: Path) -> Tuple[Path, List[str]]:
    """Copy the entry's base into ``work`` (hard links) and apply its mutation.

    :returns: the collection root and the names a message must mention.
    """
    base = bases[entry.base]
    root = work / "collection" / base.root.name
    shutil.copytree(base.root, root, copy_function=os.link)
    scratch = work / "scratch"
    scratch.mkdir()
    names = entry.mutate(Context(root, base, scratch))
    return root, names


# ---------------------------------------------------------------------------------------------- DICOM image defects
def _one(change: Callable[[pydicom.Dataset], None]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        target = context.middle()
        _edit(target, change)
        return [target.name]
    return mutate


def _every_third(change: Callable[[pydicom.Dataset], None]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        targets = context.slices()[1::3]
        for target in targets:
            _edit(target, change)
        return [target.name for target in targets]
    return mutate


def _all(change: Callable[[pydicom.Dataset], None]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        targets = context.slices()
        for target in targets:
            _edit(target, change)
        return [target.name for target in targets] + [targets[0].parent.name]
    return mutate


def _delete(keyword: str) -> Callable[[pydicom.Dataset], None]:
    def change(dataset: pydicom.Dataset) -> None:
        if keyword in dataset:
            delattr(dataset, keyword)
    return change


def _set_raw(keyword: str, vr: str, text: bytes) -> Callable[[pydicom.Dataset], None]:
    return lambda dataset: _raw(dataset, keyword, vr, text)


def _patched(change: Callable[[pydicom.Dataset], None], old: bytes, new: bytes) -> Mutation:
    """Apply ``change`` to the middle slice, then replace ``old`` by ``new`` in its bytes (invalid values)."""
    def mutate(context: Context) -> List[str]:
        target = context.middle()
        _edit(target, change)
        replace_bytes(target, target.read_bytes().replace(old, new, 1))
        return [target.name]
    return mutate


def _set(keyword: str, value: object) -> Callable[[pydicom.Dataset], None]:
    return lambda dataset: setattr(dataset, keyword, value)


def _truncate_at(fraction_of_header: Optional[float], pixel_fraction: Optional[float]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        target = context.middle()
        data = target.read_bytes()
        pixel_offset = _pixel_data_offset(data)
        if pixel_fraction is not None:
            cut = pixel_offset + 12 + int((len(data) - pixel_offset - 12) * pixel_fraction)
        else:
            cut = int(pixel_offset * fraction_of_header)  # type: ignore[operator]
        replace_bytes(target, data[:cut])
        return [target.name]
    return mutate


def _empty_file(context: Context) -> List[str]:
    target = context.middle()
    replace_bytes(target, b"")
    return [target.name]


def _text_as_dcm(context: Context) -> List[str]:
    target = context.middle()
    replace_bytes(target, b"this is not a DICOM file\n" * 20)
    return [target.name]


def _flip_preamble_magic(context: Context) -> List[str]:
    target = context.middle()
    data = bytearray(target.read_bytes())
    data[128:132] = b"DICX"
    replace_bytes(target, bytes(data))
    return [target.name]


def _huge_element_length(context: Context) -> List[str]:
    """The first element after the file meta claims a length beyond the file."""
    target = context.middle()
    data = bytearray(target.read_bytes())
    index = data.find(b"\x08\x00", 140)  # first group 0008 element
    # Explicit VR little endian short-length element: tag(4) VR(2) length(2).
    data[index + 6:index + 8] = b"\xff\xff"
    replace_bytes(target, bytes(data))
    return [target.name]


def _garbage_inserted(context: Context) -> List[str]:
    target = context.middle()
    data = target.read_bytes()
    offset = _pixel_data_offset(data) // 2
    replace_bytes(target, data[:offset] + bytes(range(256)) * 4 + data[offset:])
    return [target.name]


def _bit_flips(context: Context) -> List[str]:
    target = context.middle()
    data = bytearray(target.read_bytes())
    random = np.random.default_rng(7)
    end = _pixel_data_offset(bytes(data))
    for position in random.integers(132, end, size=12):
        data[int(position)] ^= 0x5A
    replace_bytes(target, bytes(data))
    return [target.name]


def _copy_as_duplicate_file(context: Context) -> List[str]:
    target = context.middle()
    copy = target.with_name("copy_of_" + target.name)
    shutil.copyfile(target, copy)
    return [copy.name, target.name]


def _duplicate_sop_uid(context: Context) -> List[str]:
    slices = context.slices()
    uid = pydicom.dcmread(str(slices[0]), stop_before_pixels=True).SOPInstanceUID
    _edit(slices[1], _set("SOPInstanceUID", uid))
    return [slices[1].name, slices[0].name]


def _foreign_series_in_folder(context: Context) -> List[str]:
    """A slice of another series dropped into this series' folder (two series share a folder)."""
    target = context.middle()
    dataset = pydicom.dcmread(str(target))
    dataset.SeriesInstanceUID = dataset.SeriesInstanceUID + ".99"
    dataset.SOPInstanceUID = dataset.SOPInstanceUID + ".99"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    stray = target.with_name("stray_" + target.name)
    save_dataset(dataset, stray)
    return [stray.name, target.parent.name]


def _other_series_in_folder(context: Context) -> List[str]:
    """A file of the case's other image series copied into this series' folder."""
    if not context.base.other_series:
        return _foreign_series_in_folder(context)
    source = context.path(context.base.other_series[0])
    stray = context.middle().with_name("stray_" + source.name)
    shutil.copyfile(source, stray)
    return [stray.name, stray.parent.name]


def _second_orientation_same_uid(context: Context) -> List[str]:
    """Every slice again, same SeriesInstanceUID, in a coronal orientation."""
    names = []
    for index, target in enumerate(context.slices()[:3]):
        dataset = pydicom.dcmread(str(target))
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        dataset.SOPInstanceUID = dataset.SOPInstanceUID + f".7{index}"
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        coronal = target.with_name(f"coronal_{index}_" + target.name)
        save_dataset(dataset, coronal)
        names.append(coronal.name)
    return names + [context.middle().parent.name]


def _rows_without_pixels(rows: int, columns: int) -> Callable[[pydicom.Dataset], None]:
    def change(dataset: pydicom.Dataset) -> None:
        dataset.Rows = rows
        dataset.Columns = columns
    return change


DICOM_IMAGE_DEFECTS: List[Tuple[str, Mutation, str, str]] = [
    # (name, mutation, expectation in a strict collection, expectation where the rest can load)
    ("truncated_in_header", _truncate_at(0.5, None), "either", "either"),
    ("truncated_after_preamble", _truncate_at(0.05, None), "either", "either"),
    ("truncated_mid_pixels", _truncate_at(None, 0.5), "either", "either"),
    ("empty_file", _empty_file, "either", "either"),
    ("text_named_dcm", _text_as_dcm, "either", "either"),
    ("no_dicm_magic", _flip_preamble_magic, "either", "either"),
    ("huge_element_length", _huge_element_length, "either", "either"),
    ("garbage_inserted", _garbage_inserted, "either", "either"),
    ("bit_flips_in_header", _bit_flips, "either", "tolerated"),
    ("missing_pixel_data", _one(_delete("PixelData")), "either", "either"),
    ("missing_ipp_one_slice", _one(_delete("ImagePositionPatient")), "finding", "finding"),
    ("missing_pixel_spacing_one_slice", _one(_delete("PixelSpacing")), "finding", "finding"),
    ("missing_iop_one_slice", _one(_delete("ImageOrientationPatient")), "finding", "finding"),
    ("missing_geometry_third_of_slices", _every_third(_delete("PixelSpacing")), "finding", "finding"),
    ("missing_ipp_all_slices", _all(_delete("ImagePositionPatient")), "either", "either"),
    ("missing_iop_all_slices", _all(_delete("ImageOrientationPatient")), "either", "either"),
    ("nan_ipp", _one(_set_raw("ImagePositionPatient", "DS", b"nan\\0\\0 ")), "finding", "finding"),
    ("inf_pixel_spacing", _one(_set_raw("PixelSpacing", "DS", b"inf\\1 ")), "finding", "finding"),
    ("nan_iop", _one(_set_raw("ImageOrientationPatient", "DS", b"1\\0\\0\\0\\nan\\0 ")), "finding", "finding"),
    ("non_numeric_ipp", _patched(_set_raw("ImagePositionPatient", "DS", b"11111\\22222\\33333 "),
                                 b"11111\\22222\\33333 ", b"left \\up   \\in    "), "finding", "finding"),
    ("nan_rescale_slope", _one(_set_raw("RescaleSlope", "DS", b"nan ")), "either", "either"),
    ("nan_slice_thickness", _one(_set_raw("SliceThickness", "DS", b"nan ")), "tolerated", "tolerated"),
    ("zero_pixel_spacing", _one(_set_raw("PixelSpacing", "DS", b"0\\0 ")), "either", "either"),
    ("absurd_rows_columns", _one(_rows_without_pixels(65535, 65535)), "either", "either"),
    ("absurd_rows_all_slices", _all(_rows_without_pixels(60000, 60000)), "either", "either"),
    ("zero_rows", _one(_rows_without_pixels(0, 0)), "either", "either"),
    ("bits_allocated_32", _one(_set("BitsAllocated", 32)), "either", "either"),
    ("bits_allocated_12", _one(_set("BitsAllocated", 12)), "either", "either"),
    ("bits_allocated_8", _one(_set("BitsAllocated", 8)), "either", "either"),
    ("colour_samples_per_pixel", _one(_set("SamplesPerPixel", 3)), "either", "either"),
    ("rotated_iop_one_slice", _one(_set("ImageOrientationPatient", [0, 1, 0, 0, 0, -1])), "finding", "finding"),
    ("other_spacing_one_slice", _one(_set("PixelSpacing", [3.5, 3.5])), "finding", "finding"),
    ("two_series_one_folder", _foreign_series_in_folder, "either", "either"),
    ("other_image_series_in_folder", _other_series_in_folder, "either", "either"),
    ("same_series_uid_two_orientations", _second_orientation_same_uid, "either", "either"),
    ("duplicate_file_same_sop", _copy_as_duplicate_file, "either", "either"),
    ("duplicate_sop_uid_other_position", _duplicate_sop_uid, "either", "either"),
]

#: Bases whose image series the DICOM defects are applied to.
DICOM_IMAGE_BASES = ("crlm_nbia", "crlm_idc", "lung_nbia", "lung_idc", "sts_nbia", "sts_idc", "hermessi",
                     "ispy1dicom_idc")


# ---------------------------------------------------------------------------------------------- SEG defects
def _seg(change: Callable[[pydicom.Dataset], None]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        target = context.path(context.base.segs[0])
        _edit(target, change)
        return [target.name]
    return mutate


def _seg_bytes(change: Callable[[bytes], bytes]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        target = context.path(context.base.segs[0])
        replace_bytes(target, change(target.read_bytes()))
        return [target.name]
    return mutate


def _absent_sources(dataset: pydicom.Dataset) -> None:
    for index, frame in enumerate(dataset.PerFrameFunctionalGroupsSequence):
        if index % 2 == 0:
            for derivation in frame.get("DerivationImageSequence", []):
                for source in derivation.get("SourceImageSequence", []):
                    source.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8." + str(index + 1)


def _all_sources_absent(dataset: pydicom.Dataset) -> None:
    for index, frame in enumerate(dataset.PerFrameFunctionalGroupsSequence):
        for derivation in frame.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                source.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8." + str(index + 1)
        frame.PlanePositionSequence[0].ImagePositionPatient = [0.0, 0.0, 9999.0 + index]


def _frames(delta: int) -> Callable[[pydicom.Dataset], None]:
    return lambda dataset: setattr(dataset, "NumberOfFrames", int(dataset.NumberOfFrames) + delta)


def _truncate_pixel_data(dataset: pydicom.Dataset) -> None:
    dataset.PixelData = dataset.PixelData[: len(dataset.PixelData) // 3]


def _segment_number(value: int) -> Callable[[pydicom.Dataset], None]:
    def change(dataset: pydicom.Dataset) -> None:
        dataset.SegmentSequence[-1].SegmentNumber = value
    return change


def _duplicate_segment_numbers(dataset: pydicom.Dataset) -> None:
    import copy

    if len(dataset.SegmentSequence) < 2:  # a one-segment SEG (ISPY1's vendor SEGs): a second item, same number
        dataset.SegmentSequence.append(copy.deepcopy(dataset.SegmentSequence[0]))
        dataset.SegmentSequence[1].SegmentLabel = "duplicate"
    dataset.SegmentSequence[1].SegmentNumber = dataset.SegmentSequence[0].SegmentNumber


def _referenced_segment(value: int) -> Callable[[pydicom.Dataset], None]:
    def change(dataset: pydicom.Dataset) -> None:
        frame = dataset.PerFrameFunctionalGroupsSequence[0]
        if "SegmentIdentificationSequence" not in frame:  # one segment: identified once, in the shared groups
            frame = dataset.SharedFunctionalGroupsSequence[0]
        frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber = value
    return change


def _no_per_frame(dataset: pydicom.Dataset) -> None:
    del dataset.PerFrameFunctionalGroupsSequence


def _nan_frame_position(dataset: pydicom.Dataset) -> None:
    item = dataset.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    tag = pydicom.datadict.tag_for_keyword("ImagePositionPatient")
    item[tag] = DataElement(tag, "DS", b"nan\\nan\\nan ")


def _frame_without_position(dataset: pydicom.Dataset) -> None:
    del dataset.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence


def _empty_segment_sequence(dataset: pydicom.Dataset) -> None:
    dataset.SegmentSequence = pydicom.Sequence([])


def _other_frame_of_reference(dataset: pydicom.Dataset) -> None:
    dataset.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"


def _absent_series(dataset: pydicom.Dataset) -> None:
    for item in dataset.ReferencedSeriesSequence:
        item.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"


def _seg_rows(dataset: pydicom.Dataset) -> None:
    dataset.Rows = int(dataset.Rows) * 2


def _seg_frames_not_a_number(context: Context) -> List[str]:
    """NumberOfFrames "many": patched into the bytes, as pydicom refuses to write it."""
    target = context.path(context.base.segs[0])
    data = target.read_bytes()
    element = data.find(b"\x28\x00\x08\x00IS")
    length = int.from_bytes(data[element + 6:element + 8], "little")
    value = b"many".ljust(length, b" ")[:max(length, 4)]
    patched = data[:element + 6] + len(value).to_bytes(2, "little") + value + data[element + 8 + length:]
    replace_bytes(target, patched)
    return [target.name]


def _seg_cut(fraction: float) -> Callable[[bytes], bytes]:
    return lambda data: data[: int(len(data) * fraction)]


SEG_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("seg_references_absent_instances", _seg(_absent_sources), "finding"),
    ("seg_all_frames_elsewhere", _seg(_all_sources_absent), "either"),
    ("seg_number_of_frames_too_large", _seg(_frames(+5)), "either"),
    ("seg_number_of_frames_too_small", _seg(_frames(-3)), "either"),
    ("seg_number_of_frames_not_a_number", _seg_frames_not_a_number, "either"),
    ("seg_truncated_frames", _seg(_truncate_pixel_data), "either"),
    ("seg_file_truncated_half", _seg_bytes(_seg_cut(0.5)), "either"),
    ("seg_file_truncated_header", _seg_bytes(_seg_cut(0.02)), "either"),
    ("seg_segment_number_zero", _seg(_segment_number(0)), "either"),
    ("seg_segment_number_99", _seg(_segment_number(99)), "either"),
    ("seg_duplicate_segment_numbers", _seg(_duplicate_segment_numbers), "either"),
    ("seg_bad_referenced_segment_number", _seg(_referenced_segment(77)), "either"),
    ("seg_no_per_frame_groups", _seg(_no_per_frame), "either"),
    ("seg_nan_frame_position", _seg(_nan_frame_position), "either"),
    ("seg_frame_without_position", _seg(_frame_without_position), "either"),
    ("seg_empty_segment_sequence", _seg(_empty_segment_sequence), "either"),
    ("seg_other_frame_of_reference", _seg(_other_frame_of_reference), "finding"),
    ("seg_references_absent_series", _seg(_absent_series), "either"),
    ("seg_rows_differ", _seg(_seg_rows), "either"),
    ("seg_missing_pixel_data", _seg(_delete("PixelData")), "either"),
]
SEG_BASES = ("crlm_nbia", "crlm_idc", "ispy1dicom_idc")


# ---------------------------------------------------------------------------------------------- RTSTRUCT defects
def _rtstruct(change: Callable[[pydicom.Dataset], None]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        target = context.path(context.base.rtstructs[0])
        _edit(target, change)
        return [target.name]
    return mutate


def _first_contour(dataset: pydicom.Dataset) -> pydicom.Dataset:
    return dataset.ROIContourSequence[0].ContourSequence[0]


def _empty_contour(dataset: pydicom.Dataset) -> None:
    contour = _first_contour(dataset)
    tag = pydicom.datadict.tag_for_keyword("ContourData")
    contour[tag] = DataElement(tag, "DS", b"")
    contour.NumberOfContourPoints = 0


def _nan_contour(dataset: pydicom.Dataset) -> None:
    contour = _first_contour(dataset)
    tag = pydicom.datadict.tag_for_keyword("ContourData")
    contour[tag] = DataElement(tag, "DS", b"\\".join([b"nan"] * 9) + b" ")
    contour.NumberOfContourPoints = 3


def _text_contour(context: Context) -> List[str]:
    target = context.path(context.base.rtstructs[0])

    def change(dataset: pydicom.Dataset) -> None:
        _first_contour(dataset).ContourData = [77777, 77777, 77777] * 3

    _edit(target, change)
    replace_bytes(target, target.read_bytes().replace(b"77777", b"a b c", 3))
    return [target.name]


def _odd_contour(dataset: pydicom.Dataset) -> None:
    contour = _first_contour(dataset)
    contour.ContourData = list(contour.ContourData)[:-1]


def _all_contours_nan(dataset: pydicom.Dataset) -> None:
    tag = pydicom.datadict.tag_for_keyword("ContourData")
    for roi in dataset.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            count = len(contour.ContourData)
            contour[tag] = DataElement(tag, "DS", b"\\".join([b"nan"] * count) + (b" " if count % 2 else b""))


def _wrong_frame_of_reference(dataset: pydicom.Dataset) -> None:
    uid = "1.2.826.0.1.3680043.8.498.3"
    dataset.FrameOfReferenceUID = uid
    for item in dataset.get("ReferencedFrameOfReferenceSequence", []):
        item.FrameOfReferenceUID = uid
        for study in item.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                series.SeriesInstanceUID = uid + ".1"
                for image in series.get("ContourImageSequence", []):
                    image.ReferencedSOPInstanceUID = uid + ".2"
    for item in dataset.StructureSetROISequence:
        item.ReferencedFrameOfReferenceUID = uid
    for roi in dataset.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            for image in contour.get("ContourImageSequence", []):
                image.ReferencedSOPInstanceUID = uid + ".2"


def _dangling_roi_number(dataset: pydicom.Dataset) -> None:
    dataset.ROIContourSequence[0].ReferencedROINumber = 4242


def _no_roi_contours(dataset: pydicom.Dataset) -> None:
    del dataset.ROIContourSequence


def _no_structure_set_rois(dataset: pydicom.Dataset) -> None:
    del dataset.StructureSetROISequence


def _huge_contour_values(dataset: pydicom.Dataset) -> None:
    contour = _first_contour(dataset)
    contour.ContourData = [1e300 if index % 3 != 2 else value for index, value in enumerate(contour.ContourData)]


def _rtstruct_bytes(fraction: float) -> Mutation:
    def mutate(context: Context) -> List[str]:
        target = context.path(context.base.rtstructs[0])
        data = target.read_bytes()
        replace_bytes(target, data[: int(len(data) * fraction)])
        return [target.name]
    return mutate


RTSTRUCT_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("rtstruct_empty_contour", _rtstruct(_empty_contour), "either"),
    ("rtstruct_nan_contour", _rtstruct(_nan_contour), "either"),
    ("rtstruct_all_contours_nan", _rtstruct(_all_contours_nan), "either"),
    ("rtstruct_text_contour", _text_contour, "either"),
    ("rtstruct_odd_contour_values", _rtstruct(_odd_contour), "either"),
    ("rtstruct_huge_contour_values", _rtstruct(_huge_contour_values), "either"),
    ("rtstruct_wrong_frame_of_reference", _rtstruct(_wrong_frame_of_reference), "either"),
    ("rtstruct_dangling_roi_number", _rtstruct(_dangling_roi_number), "either"),
    ("rtstruct_no_roi_contours", _rtstruct(_no_roi_contours), "either"),
    ("rtstruct_no_structure_set_rois", _rtstruct(_no_structure_set_rois), "either"),
    ("rtstruct_truncated", _rtstruct_bytes(0.6), "either"),
    ("rtstruct_truncated_header", _rtstruct_bytes(0.03), "either"),
]
RTSTRUCT_BASES = ("sts_nbia", "sts_idc")


# ---------------------------------------------------------------------------------------------- VOC XML defects
_GOOD_OBJECT = ("<object><name>A</name><pose>Unspecified</pose><truncated>0</truncated><Difficult>0</Difficult>"
                "<bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>")


def _voc(xmin: str = "10", ymin: str = "10", xmax: str = "20", ymax: str = "20", prolog: str = "") -> bytes:
    body = (f"<annotation verified=\"no\"><folder>Unknow</folder><filename>Unknow</filename><path>Unknow</path>"
            f"<source>Unknow<database>Unknown</database></source><size><width>128</width><height>128</height>"
            f"<depth>1</depth></size><segmented>0</segmented>{_GOOD_OBJECT.format(xmin, ymin, xmax, ymax)}"
            f"</annotation>")
    return (prolog + body).encode("utf-8")


def _xml_target(context: Context) -> Path:
    """An annotation file of the case, found by the SOPInstanceUID of the middle CT slice."""
    annotation = next(context.root.rglob("Annotation"))
    folders = [folder for folder in annotation.iterdir() if folder.is_dir()]
    files = sorted(path for folder in folders for path in folder.glob("*.xml"))
    slice_uid = pydicom.dcmread(str(context.middle()), stop_before_pixels=True).SOPInstanceUID
    matching = [path for path in files if path.stem == slice_uid]
    return matching[0] if matching else folders[0] / f"{slice_uid}.xml"


def _xml(content: Callable[[Context], bytes]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        target = _xml_target(context)
        replace_bytes(target, content(context))
        return [target.name]
    return mutate


_BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                   + "".join(f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">'
                             for n in range(1, 10))
                   + ']><annotation><folder>&lol9;</folder></annotation>')

XML_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("xml_malformed", _xml(lambda c: _voc()[:-20]), "finding"),
    ("xml_not_xml", _xml(lambda c: b"\x89PNG\r\n\x1a\n" + bytes(200)), "finding"),
    ("xml_empty", _xml(lambda c: b""), "finding"),
    ("xml_external_entity", _xml(lambda c: _voc(
        "&xxe;", prolog='<?xml version="1.0"?><!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>')), "finding"),
    ("xml_billion_laughs", _xml(lambda c: _BILLION_LAUGHS.encode()), "finding"),
    ("xml_remote_dtd", _xml(lambda c: _voc(
        prolog='<!DOCTYPE annotation SYSTEM "http://example.invalid/voc.dtd">')), "finding"),
    ("xml_public_dtd", _xml(lambda c: _voc(
        prolog='<!DOCTYPE annotation PUBLIC "-//X//Y" "http://example.invalid/voc.dtd">')), "finding"),
    ("xml_undeclared_entity", _xml(lambda c: _voc("&nope;")), "finding"),
    ("xml_non_numeric_coordinate", _xml(lambda c: _voc("ten")), "finding"),
    ("xml_nan_coordinate", _xml(lambda c: _voc("nan")), "finding"),
    ("xml_inf_coordinate", _xml(lambda c: _voc("10", "10", "inf")), "finding"),
    ("xml_huge_numbers", _xml(lambda c: _voc("1e300", "-1e300", "1e308", "1e308")), "finding"),
    ("xml_overflowing_number", _xml(lambda c: _voc("10", "10", "1e999")), "finding"),
    ("xml_inverted_box", _xml(lambda c: _voc("40", "40", "10", "10")), "finding"),
    ("xml_negative_box", _xml(lambda c: _voc("-50", "-50", "-10", "-10")), "finding"),
    ("xml_missing_bndbox", _xml(lambda c: _voc().replace(b"<bndbox>", b"<box>").replace(b"</bndbox>", b"</box>")),
     "finding"),
    ("xml_wrong_root", _xml(lambda c: b"<svg><rect/></svg>"), "finding"),
    ("xml_ten_megabytes", _xml(lambda c: _voc().replace(b"<segmented>", b"<!--" + b"x" * 10_000_000
                                                         + b"--><segmented>")), "finding"),
    ("xml_utf16", _xml(lambda c: _voc("12", "12", "30", "30", prolog='<?xml version="1.0" encoding="UTF-16"?>')
                       .decode("utf-8").encode("utf-16")), "tolerated"),
    ("xml_utf16_with_entity", _xml(lambda c: _voc(
        "&xxe;", prolog='<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
    ).decode("utf-8").encode("utf-16")), "finding"),
    ("xml_nul_bytes", _xml(lambda c: _voc().replace(b"<folder>", b"<folder>\x00\x00")), "finding"),
    ("xml_deep_nesting", _xml(lambda c: b"<annotation>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</annotation>"),
     "either"),
]
XML_BASES = ("lung_nbia", "lung_idc")


# ---------------------------------------------------------------------------------------------- NIfTI defects
def _ispy_image(context: Context) -> Path:
    return sorted(context.root.rglob("images_bias-corrected_nifti/*/*_DCE_0001_N3.nii.gz"))[0]


def _ispy_mask(context: Context) -> Path:
    return sorted(context.root.rglob("masks_stv_manual/*.nii.gz"))[0]


def _nifti_bytes(path: Path) -> bytearray:
    return bytearray(gzip.decompress(path.read_bytes()))


def _write_nifti(path: Path, data: bytes, compress: bool = True) -> None:
    replace_bytes(path, gzip.compress(bytes(data), mtime=0) if compress else bytes(data))


def _nifti(pick: Callable[[Context], Path], change: Callable[[bytearray], bytes]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        target = pick(context)
        _write_nifti(target, change(_nifti_bytes(target)))
        return [target.name]
    return mutate


def _nifti_raw(pick: Callable[[Context], Path], change: Callable[[bytes], bytes]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        target = pick(context)
        replace_bytes(target, change(target.read_bytes()))
        return [target.name]
    return mutate


def _put(offset: int, fmt: str, *values: float) -> Callable[[bytearray], bytes]:
    def change(data: bytearray) -> bytes:
        struct.pack_into("<" + fmt, data, offset, *values)
        return bytes(data)
    return change


def _dims(*dims: int) -> Callable[[bytearray], bytes]:
    values = list(dims) + [1] * (8 - len(dims))
    return _put(40, "8h", *values)


def _nan_voxels(data: bytearray) -> bytes:
    # Make the data float32 so that NaN can be stored: datatype 16, bitpix 32.
    dims = struct.unpack_from("<8h", data, 40)
    count = int(np.prod([d for d in dims[1:dims[0] + 1]]))
    offset = int(struct.unpack_from("<f", data, 108)[0])
    struct.pack_into("<hh", data, 70, 16, 32)
    voxels = np.full(count, 1.0, dtype="<f4")
    voxels[::7] = np.nan
    return bytes(data[:offset]) + voxels.tobytes()


def _shear(keep_qform: bool) -> Callable[[bytearray], bytes]:
    def change(data: bytearray) -> bytes:
        struct.pack_into("<h", data, 254, 1)  # sform_code
        if not keep_qform:
            struct.pack_into("<h", data, 252, 0)  # qform_code
        row_x = list(struct.unpack_from("<4f", data, 280))
        row_x[1] += 0.7  # x depends on j: shear
        struct.pack_into("<4f", data, 280, *row_x)
        return bytes(data)
    return change


def _truncate_uncompressed(data: bytearray) -> bytes:
    return bytes(data[: len(data) // 2])


def _gz_corrupt_crc(data: bytes) -> bytes:
    return data[:-8] + bytes(8)


def _gz_flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def _uncompressed_but_gz_name(context: Context) -> List[str]:
    target = _ispy_image(context)
    data = _nifti_bytes(target)
    _write_nifti(target, bytes(data[: len(data) // 2]), compress=False)
    return [target.name]


NIFTI_DEFECTS: List[Tuple[str, Mutation, str]] = []
for _name, _pick in (("image", _ispy_image), ("mask", _ispy_mask)):
    NIFTI_DEFECTS += [
        (f"nifti_{_name}_truncated_data", _nifti(_pick, _truncate_uncompressed), "either"),
        (f"nifti_{_name}_truncated_header", _nifti(_pick, lambda d: bytes(d[:200])), "either"),
        (f"nifti_{_name}_wrong_magic", _nifti(_pick, _put(344, "4s", b"xyz\0")), "either"),
        (f"nifti_{_name}_zero_dims", _nifti(_pick, _dims(3, 0, 0, 0)), "either"),
        (f"nifti_{_name}_five_d", _nifti(_pick, _dims(5, 2, 2, 2, 2, 3)), "either"),
        (f"nifti_{_name}_absurd_dims", _nifti(_pick, _dims(3, 30000, 30000, 30000)), "either"),
        (f"nifti_{_name}_negative_dims", _nifti(_pick, _dims(3, -5, 10, 10)), "either"),
        (f"nifti_{_name}_nan_voxels", _nifti(_pick, _nan_voxels), "either"),
        (f"nifti_{_name}_negative_pixdim", _nifti(_pick, _put(80, "3f", -1.0, -1.0, -2.0)), "tolerated"),
        (f"nifti_{_name}_nan_pixdim", _nifti(_pick, _put(80, "3f", float("nan"), 1.0, 1.0)), "tolerated"),
        (f"nifti_{_name}_sform_shear_no_qform", _nifti(_pick, _shear(False)), "either"),
        (f"nifti_{_name}_sform_shear_with_qform", _nifti(_pick, _shear(True)), "tolerated"),
        # A NaN sform beside a valid qform: the qform is used, as Slicer does.
        (f"nifti_{_name}_nan_sform", _nifti(_pick, _put(280, "4f", *([float("nan")] * 4))), "tolerated"),
        (f"nifti_{_name}_gz_bad_crc", _nifti_raw(_pick, _gz_corrupt_crc), "either"),
        (f"nifti_{_name}_gz_flipped_byte", _nifti_raw(_pick, _gz_flip_middle), "either"),
        (f"nifti_{_name}_gz_truncated", _nifti_raw(_pick, lambda d: d[: len(d) // 2]), "either"),
        (f"nifti_{_name}_empty", _nifti_raw(_pick, lambda d: b""), "either"),
        (f"nifti_{_name}_not_gzip", _nifti_raw(_pick, lambda d: b"plain text, not gzip\n" * 30), "either"),
    ]
NIFTI_DEFECTS.append(("nifti_uncompressed_named_gz_truncated", _uncompressed_but_gz_name, "either"))


def _wrong_shape_mask(context: Context) -> List[str]:
    import nibabel as nib

    target = _ispy_mask(context)
    image = nib.load(str(target))
    data = np.zeros((5, 6, 7), dtype=np.uint8)
    data[2, 3, 3] = 1
    target.unlink()
    nib.save(nib.Nifti1Image(data, image.affine), str(target))
    return [target.name]


def _non_binary_mask(context: Context) -> List[str]:
    import nibabel as nib

    target = _ispy_mask(context)
    image = nib.load(str(target))
    data = np.asarray(image.dataobj).astype(np.float32) * 3.7 - 1.0
    target.unlink()
    nib.save(nib.Nifti1Image(data, image.affine), str(target))
    return [target.name]


NIFTI_DEFECTS += [
    ("nifti_mask_other_grid", _wrong_shape_mask, "either"),
    ("nifti_mask_non_binary_values", _non_binary_mask, "either"),
]


# ---------------------------------------------------------------------------------------------- spreadsheet defects
def _sheet_path(context: Context) -> Path:
    for pattern in ("Colorectal-Liver-Metastases-Clinical*.xlsx", "INFOclinical_STS.xlsx", "ISPY_DataPaper_features.xlsx"):
        found = sorted(context.root.rglob(pattern))
        if found:
            return found[0]
    raise AssertionError(f"no spreadsheet in {context.root}")


def _sheet(content: Callable[[Path, Context], Optional[Path]]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        target = _sheet_path(context)
        written = content(target, context) or target
        return [written.name]
    return mutate


def _rewrite_workbook(change: Callable[["object"], "object"], sheet_name: Optional[str] = None
                      ) -> Callable[[Path, Context], None]:
    def content(target: Path, context: Context) -> None:
        import pandas as pd

        workbook = pd.ExcelFile(target)
        table = pd.read_excel(workbook, sheet_name=workbook.sheet_names[0])
        name = sheet_name or workbook.sheet_names[0]
        workbook.close()
        target.unlink()
        change(table).to_excel(target, index=False, sheet_name=name)  # type: ignore[attr-defined]
    return content


def _drop_id_column(table):  # type: ignore[no-untyped-def]
    identifier = [column for column in table.columns if "id" in str(column).lower()][:1] or [table.columns[0]]
    return table.drop(columns=identifier)


def _zip_garbage(target: Path, context: Context) -> None:
    replace_bytes(target, b"PK\x03\x04" + bytes(range(256)) * 8)


def _zip_without_workbook(target: Path, context: Context) -> None:
    target.unlink()
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")


def _csv_target(target: Path, context: Context) -> Tuple[Optional[Path], Path]:
    """(workbook to replace, csv to write): ISPY1 reads its CaPTk csv by name, the others accept a csv workbook."""
    captk = sorted(context.root.rglob("captk*.csv"))
    if captk:
        return None, captk[0]
    return target, target.with_suffix(".csv")


def _as_cp1252_csv(target: Path, context: Context) -> Path:
    import pandas as pd

    workbook, csv_path = _csv_target(target, context)
    table = pd.read_excel(workbook) if workbook is not None else pd.read_csv(csv_path)
    table[table.columns[-1]] = table[table.columns[-1]].astype(object)
    table.iloc[0, -1] = "Müller – café"
    if workbook is not None:
        workbook.unlink()
    if csv_path.exists():
        csv_path.unlink()
    table.to_csv(csv_path, index=False, encoding="cp1252")
    return csv_path


def _as_garbage_csv(target: Path, context: Context) -> Path:
    workbook, csv_path = _csv_target(target, context)
    if workbook is not None:
        workbook.unlink()
    replace_bytes(csv_path, b"\x00\xff\xfe garbage \x81\x8d\x8f\n\"unclosed,quote\n" * 3)
    return csv_path


SHEET_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("sheet_missing_id_column", _sheet(_rewrite_workbook(_drop_id_column)), "either"),
    ("sheet_unexpected_sheet_name", _sheet(_rewrite_workbook(lambda t: t, "Renamed sheet")), "tolerated"),
    ("sheet_empty_file", _sheet(lambda target, context: replace_bytes(target, b"")), "either"),
    ("sheet_zip_garbage", _sheet(_zip_garbage), "either"),
    ("sheet_zip_without_workbook", _sheet(_zip_without_workbook), "either"),
    ("sheet_no_rows", _sheet(_rewrite_workbook(lambda t: t.iloc[0:0])), "either"),
    ("sheet_cp1252_csv", _sheet(_as_cp1252_csv), "tolerated"),
    ("sheet_garbage_csv", _sheet(_as_garbage_csv), "either"),
]
SHEET_BASES = ("crlm_nbia", "sts_nbia", "ispy1")


# ---------------------------------------------------------------------------------------------- Hermessi raster defects
def _hermessi_png(context: Context) -> Path:
    return sorted(context.root.rglob("STS_003_T2FS_01.png"))[0]


def _hermessi(change: Callable[[bytes], bytes]) -> Mutation:
    def mutate(context: Context) -> List[str]:
        target = _hermessi_png(context)
        replace_bytes(target, change(target.read_bytes()))
        return [target.name]
    return mutate


HERMESSI_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("png_truncated", _hermessi(lambda d: d[: len(d) // 2]), "either"),
    ("png_header_only", _hermessi(lambda d: d[:16]), "either"),
    ("png_bad_crc", _hermessi(lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:]), "either"),
    ("png_absurd_size", _hermessi(lambda d: d[:16] + struct.pack(">II", 100000, 100000) + d[24:]), "either"),
    ("png_empty", _hermessi(lambda d: b""), "either"),
]


# ---------------------------------------------------------------------------------------------- round two (issue 20)
# Bounded work: sizes claimed by headers far beyond the bytes present, refused before any allocation.
def _seg_claims(frames: Optional[int] = None, rows: Optional[int] = None) -> Callable[[pydicom.Dataset], None]:
    def change(dataset: pydicom.Dataset) -> None:
        if frames is not None:
            dataset.NumberOfFrames = frames
        if rows is not None:
            dataset.Rows = rows
    return change


def _deflated_slice(inflated_zeros: int) -> Mutation:
    """The middle slice as deflated DICOM with ``inflated_zeros`` bytes of zeros in a private element."""
    def mutate(context: Context) -> List[str]:
        import zlib

        target = context.middle()
        dataset = pydicom.dcmread(str(target))
        dataset.add_new(0x00F10010, "LO", "SLLB bomb")
        dataset.add_new(0x00F11000, "OB", b"\x00" * 8)  # grown to ``inflated_zeros`` below
        dataset.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        meta_end = 144 + int.from_bytes(data[140:144], "little")
        plain = zlib.decompress(data[meta_end:], -zlib.MAX_WBITS)
        marker = b"\xf1\x00\x00\x10OB\x00\x00" + (8).to_bytes(4, "little") + b"\x00" * 8
        split = plain.index(marker)
        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = [compressor.compress(plain[:split] + marker[:8] + inflated_zeros.to_bytes(4, "little"))]
        remaining = inflated_zeros
        while remaining:
            block = min(remaining, 1 << 24)
            body.append(compressor.compress(b"\x00" * block))
            remaining -= block
        body.append(compressor.compress(plain[split + len(marker):]))
        body.append(compressor.flush())
        replace_bytes(target, data[:meta_end] + b"".join(body))
        return [target.name]
    return mutate


def _xlsx_member_bomb(member_bytes: int) -> Callable[[Path, Context], None]:
    def content(target: Path, context: Context) -> None:
        source = target.read_bytes()
        target.unlink()
        with zipfile.ZipFile(io.BytesIO(source)) as original, \
                zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for item in original.infolist():
                data = original.read(item.filename)
                if item.filename.startswith("xl/worksheets/") and b"<sheetData" in data:
                    split = data.index(b"<sheetData")
                    with archive.open(item.filename, "w", force_zip64=True) as stream:
                        stream.write(data[:split])
                        remaining = member_bytes
                        while remaining:
                            block = min(remaining, 1 << 24)
                            stream.write(b" " * block)
                            remaining -= block
                        stream.write(data[split:])
                else:
                    archive.writestr(item, data)
    return content


def _nifti_claims_voxels(shape: Tuple[int, ...]) -> Callable[[bytearray], bytes]:
    def change(data: bytearray) -> bytes:
        dims = [len(shape)] + list(shape) + [1] * (7 - len(shape))
        data[40:56] = struct.pack("<8h", *dims)
        return bytes(data[:352 + 16])  # a header and 16 bytes: nothing like the voxels claimed
    return change


BOUND_SEG_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("bound_seg_five_million_frames", _seg(_seg_claims(frames=5_000_000)), "either"),
    ("bound_seg_rows_claim_beyond_pixels", _seg(_seg_claims(rows=60000)), "either"),
]
BOUND_IMAGE_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("bound_deflated_slice_bomb", _deflated_slice(96 << 20), "either"),
]
BOUND_NIFTI_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("bound_nifti_gz_claims_2e31_voxels", _nifti(_ispy_mask, _nifti_claims_voxels((2048, 1024, 1024))), "either"),
    ("bound_nifti_image_claims_2e31_voxels", _nifti(_ispy_image, _nifti_claims_voxels((2048, 1024, 1024))),
     "either"),
]
BOUND_SHEET_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("bound_xlsx_zip_bomb", _sheet(_xlsx_member_bomb(64 << 20)), "either"),
]


# Names: NUL and control characters, overlong text and colliding IDs must load (sanitised once, in the builder).
def _hostile_series_text(dataset: pydicom.Dataset) -> None:
    dataset.SeriesDescription = "Series\x00 with NUL\x01\x1f" + "x" * 40
    dataset.StudyDescription = "Study\tnewline\r\n" + "y" * 40


def _colliding_roi_names(dataset: pydicom.Dataset) -> None:
    names = ["GTV", "GTV_Mass", "GTV\x00Mass", "GTV " + "z" * 300]
    for item, name in zip(dataset.StructureSetROISequence, itertools.cycle(names)):
        item.ROIName = name


def _symlink_loops(context: Context) -> List[str]:
    folder = context.middle().parent
    os.symlink("loop.dcm", folder / "loop.dcm")
    os.symlink("loop_b.dcm", folder / "loop_a.dcm")
    os.symlink("loop_a.dcm", folder / "loop_b.dcm")
    return ["loop.dcm"]


NAME_IMAGE_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("names_nul_and_control_characters", _all(_hostile_series_text), "tolerated"),
    ("walk_symlink_loops_in_series_folder", _symlink_loops, "tolerated"),
]
NAME_RTSTRUCT_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("names_colliding_roi_names", _rtstruct(_colliding_roi_names), "tolerated"),
]


# Identity: an annotation or image that is not this patient's, or not in its images' frame, is named.
def _spelled_differently(case_id: str) -> str:
    """``STS_001`` -> ``sts-1``: the same patient for the collection's rule, another string for a comparison."""
    prefix, _, number = case_id.partition("_")
    return f"{prefix.lower()}-{int(number)}"


def _patient_id_spelled(where: str) -> Mutation:
    def mutate(context: Context) -> List[str]:
        spelled = _spelled_differently(context.base.spec.case_id)
        targets = {"one_slice": [context.middle()], "every_slice": context.slices(),
                   "rtstruct": [context.path(context.base.rtstructs[0])]}[where]
        for target in targets:
            _edit(target, _set("PatientID", spelled))
        return [target.name for target in targets]
    return mutate


def _other_patients_rtstruct(copied_in: bool) -> Mutation:
    """An RTSTRUCT of patient STS_031 on this patient's images: relabelled in place, or a copy beside it."""
    def mutate(context: Context) -> List[str]:
        source = context.path(context.base.rtstructs[0])
        dataset = pydicom.dcmread(str(source))
        dataset.PatientID = "STS_031"
        dataset.PatientName = "STS_031"
        target = source
        if copied_in:
            dataset.SOPInstanceUID = pydicom.uid.generate_uid()
            dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
            dataset.SeriesInstanceUID = pydicom.uid.generate_uid()
            target = source.with_name("RS_STS_031.dcm")
        save_dataset(dataset, target)
        return [target.name]
    return mutate


def _only_frame_of_reference(dataset: pydicom.Dataset) -> None:
    """Another FrameOfReferenceUID everywhere the RTSTRUCT states one; its image references kept."""
    uid = "1.2.826.0.1.3680043.8.498.31"
    dataset.FrameOfReferenceUID = uid
    for item in dataset.get("ReferencedFrameOfReferenceSequence", []):
        item.FrameOfReferenceUID = uid
    for item in dataset.StructureSetROISequence:
        item.ReferencedFrameOfReferenceUID = uid


IDENTITY_RTSTRUCT_DEFECTS: List[Tuple[str, Mutation, str]] = [
    ("identity_rtstruct_relabelled_to_another_patient", _other_patients_rtstruct(copied_in=False), "finding"),
    ("identity_rtstruct_of_another_patient_copied_in", _other_patients_rtstruct(copied_in=True), "finding"),
    ("identity_rtstruct_in_another_frame_of_reference", _rtstruct(_only_frame_of_reference), "finding"),
    ("identity_rtstruct_patient_id_spelled_differently", _patient_id_spelled("rtstruct"), "finding"),
    ("identity_slice_patient_id_spelled_differently", _patient_id_spelled("one_slice"), "finding"),
    ("identity_series_patient_id_spelled_differently", _patient_id_spelled("every_slice"), "finding"),
]


# ---------------------------------------------------------------------------------------------- the corpus
def _entries() -> List[Entry]:
    entries: List[Entry] = []
    for base in DICOM_IMAGE_BASES:
        for name, mutation, strict, tolerant in DICOM_IMAGE_DEFECTS:
            entries.append(Entry(f"{base}-{name}", base, mutation, tolerant if base.startswith("lung") else strict))
    for base in SEG_BASES:
        entries += [Entry(f"{base}-{name}", base, mutation, expect) for name, mutation, expect in SEG_DEFECTS]
    for base in RTSTRUCT_BASES:
        entries += [Entry(f"{base}-{name}", base, mutation, expect) for name, mutation, expect in RTSTRUCT_DEFECTS]
    for base in XML_BASES:
        entries += [Entry(f"{base}-{name}", base, mutation, expect) for name, mutation, expect in XML_DEFECTS]
    entries += [Entry(f"ispy1-{name}", "ispy1", mutation, expect) for name, mutation, expect in NIFTI_DEFECTS]
    for base in SHEET_BASES:
        entries += [Entry(f"{base}-{name}", base, mutation, expect) for name, mutation, expect in SHEET_DEFECTS]
    entries += [Entry(f"hermessi-{name}", "hermessi", mutation, expect) for name, mutation, expect in HERMESSI_DEFECTS]
    entries += _round_two_entries()
    return entries


def _round_two_entries() -> List[Entry]:
    """Issue 20's families: bounded work, names, walks, identity (atomic outputs, caches and stores have their
    own tests)."""
    entries: List[Entry] = []
    for base in SEG_BASES:
        entries += [Entry(f"{base}-{name}", base, mutation, expect) for name, mutation, expect in BOUND_SEG_DEFECTS]
    for base in DICOM_IMAGE_BASES:
        if base == "hermessi":
            continue  # Hermessi's slices are single DICOM files read by their own reader
        entries += [Entry(f"{base}-{name}", base, mutation, expect)
                    for name, mutation, expect in BOUND_IMAGE_DEFECTS + NAME_IMAGE_DEFECTS]
    entries += [Entry(f"ispy1-{name}", "ispy1", mutation, expect) for name, mutation, expect in BOUND_NIFTI_DEFECTS]
    for base in SHEET_BASES:
        entries += [Entry(f"{base}-{name}", base, mutation, expect) for name, mutation, expect in BOUND_SHEET_DEFECTS]
    for base in RTSTRUCT_BASES:
        entries += [Entry(f"{base}-{name}", base, mutation, expect)
                    for name, mutation, expect in NAME_RTSTRUCT_DEFECTS + IDENTITY_RTSTRUCT_DEFECTS]
    return entries


ENTRIES: List[Entry] = _entries()
