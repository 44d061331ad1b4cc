"""Evaluation metrics of sera_mm."""
from .ref_seg_metric import RefSegMetric

__all__ = ['RefSegMetric']
