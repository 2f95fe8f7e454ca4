"""Dropping VOC XML files onto volumes already in the scene."""
from __future__ import annotations

import numpy as np

from SarcomaLungLiverBrowserLib.browser import CollectionBrowser
from SarcomaLungLiverBrowserLib.samples import lung_pet_ct_dx
from SarcomaLungLiverBrowserLib.scene.voc_rois import place_voc_files, slice_index_by_uid


def roi_box(roi):
    return np.round(np.array(roi.GetCenter()), 3).tolist() + np.round(np.array(roi.GetSize()), 3).tolist()


def test_dropped_xml_files_land_where_the_collection_loader_puts_them(headless, tmp_path):
    root = lung_pet_ct_dx.generate(tmp_path)
    browser = CollectionBrowser(headless.scene)
    browser.open(root)
    case = browser.cases()[0]
    loaded = browser.load_case(case.case_id)
    uids = slice_index_by_uid(headless.scene)
    assert uids, "loaded volumes must record their slice UIDs"
    annotation_folder = next(root.rglob(f"Annotation/{case.case_id.split('-')[-1]}"))
    placed, findings = place_voc_files([annotation_folder], browser.builder)
    loader_boxes = {tuple(roi_box(roi)) for roi in loaded.rois}
    placed_boxes = [tuple(roi_box(roi)) for roi in placed]
    assert placed and sum(box in loader_boxes for box in placed_boxes) >= len(placed_boxes) - 2
    xml_files = list(annotation_folder.glob("*.xml"))
    assert len(placed) + len(findings) >= len(xml_files) - 1
    for finding in findings:
        assert ".xml" in finding.message


def test_xml_for_a_slice_that_is_not_loaded_is_reported_by_name(headless, tmp_path, builder):
    xml = tmp_path / "1.2.3.4.5.xml"
    xml.write_text('<annotation verified="no"><size><width>4</width><height>4</height><depth>1</depth></size>'
                   "<object><name>A</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
                   "</bndbox></object></annotation>")
    placed, findings = place_voc_files([xml], builder)
    assert placed == [] and len(findings) == 1 and "1.2.3.4.5.xml" in findings[0].message
