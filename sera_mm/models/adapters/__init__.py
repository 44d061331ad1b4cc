from .plain_adapter import PlainAdapter
from .sera_adapter import SERAAdapter

__all__ = ['PlainAdapter', 'SERAAdapter']
