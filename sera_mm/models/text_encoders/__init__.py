from .clip_checkpoint import read_clip_text_state_dict
from .clip_tokenizer import CLIPTokenizer
from .openclip_text_encoder import OpenCLIPTextEncoder

__all__ = ['CLIPTokenizer', 'OpenCLIPTextEncoder', 'read_clip_text_state_dict']
