"""Paths the tests share."""
import os.path as osp

#: The repository root.
REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
#: The CPU demo config (absolute path).
TINY_CONFIG = osp.join(REPO, 'configs', 'synthetic', 'sera-tiny_synthetic.py')
