"""The bottom layer: what every component of xputrace agrees on.

The event ABI (the C headers in ``include/``, read by the BPF programs, the agent and
``abi``; the agent's exit codes, ``exit_codes``), what each probe's events mean (one schema
per probe in ``probes``; its functions by kind in ``calls``), device memory held
(``memory``), and the control protocol between backend and manager (``protocol``). It imports
nothing else of the project; ``trace_export``, ``backend`` and ``manager`` import it.
"""
