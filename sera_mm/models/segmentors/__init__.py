from .referring_segmentor import ReferringSegmentor

__all__ = ['ReferringSegmentor']
