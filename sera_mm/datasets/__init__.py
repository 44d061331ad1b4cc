"""Datasets and transforms of sera_mm (importing registers them)."""
from . import transforms  # noqa: F401
from .grefcoco import GRefCOCODataset
from .mixed_refer import MixedRefCOCODataset
from .refcoco import RefCOCODataset
from .refer_pickle import load_refer_pickle
from .synthetic import generate_synthetic_refer

__all__ = ['GRefCOCODataset', 'MixedRefCOCODataset', 'RefCOCODataset', 'load_refer_pickle', 'generate_synthetic_refer']
