from .clip_checkpoint import read_clip_text_state_dict
from .openclip_text_encoder import OpenCLIPTextEncoder

__all__ = ['OpenCLIPTextEncoder', 'read_clip_text_state_dict']
