"""Helpers shared by the test modules: the one place a test imports a helper
from (``from helpers.<module> import ...``; ``tests/`` is on ``sys.path``,
see ``pythonpath`` in setup.cfg). Fixtures are in the conftest.py files.

- paths: the repository root and the CPU demo config.
- refer: the hand-made REFER set and the edits that break it.
- configs: finding, loading and comparing the configs under configs/.
- forced_routing: a router whose choice of experts the test fixes.
- norms: randomised norm layers (so that an identity init shows).
- dinov2_official_layout: random DINOv2 weights in the official key layout.
- detris_reference: an independent functional reading of DETRIS's model and
  letterbox, and DETRIS's checkpoint layout.
- tool_runner: loading a tool as a module, running it as a subprocess.
- checkpoint_io: reading Runner checkpoints and comparing their states.
- resume_probe: a hook that a subprocess training imports by module name.
"""
