"""Generators of sample collections in their real on-disk layouts (tests and demo data).

Each module next to this one writes one collection and returns its root
folder; :func:`generate_all` writes every collection below one folder.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Dict

__all__ = ["generate_all", "SAMPLE_MODULES"]

#: Sample generator modules; each has ``generate(parent: Path) -> Path``.
SAMPLE_MODULES = ("crlm", "lung_pet_ct_dx", "ispy1", "ispy1_dicom", "soft_tissue_sarcoma", "hermessi")


def generate_all(parent: Path) -> Dict[str, Path]:
    """Write every sample collection under ``parent``; returns module -> collection root."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    roots = {}
    for module_name in SAMPLE_MODULES:
        module = importlib.import_module(f"{__name__}.{module_name}")
        roots[module_name] = module.generate(parent)
    return roots
