"""The target's CPython, read from outside it: where its interpreter state lies
(target.py, with offsets.py and debug_offsets.py) and where its calls can be hooked
(hooks.py, with opcodes.py)."""
