"""The bottom layer: what every component of xputrace agrees on.

The event ABI (the C headers in ``include/``, read by the BPF programs, the agent and
``abi``), and the control protocol between backend and manager (``protocol``). It imports
nothing else of the project; ``trace_export``, ``backend`` and ``manager`` import it.
"""
