"""Small helpers of sera_mm: safe checkpoint loading, parameter reports."""
from .checkpoint import (checkpoint_safe_globals,
                         register_checkpoint_safe_globals)
from .param_report import format_param_report, param_report

__all__ = [
    'checkpoint_safe_globals', 'register_checkpoint_safe_globals',
    'format_param_report', 'param_report'
]
