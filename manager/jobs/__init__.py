"""AI jobs on this machine: discovered as processes start (procwatch), classified, described.

``watch.Watcher`` runs xputrace-procwatch and keeps ``table.ProcessTable`` current; a process
becomes a job when ``classify`` finds an accelerator runtime or a framework in it, and
``describe`` then reads what seed 000 §3 asks of a job. Reads of /proc go through
``procfs.ProcessHandle`` (pinned to one process), reads of the process's files through
``rootfs.ConfinedRoot`` (confined to its root, as it could read them).
"""
