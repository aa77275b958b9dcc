"""xputrace manager: per-machine root daemon that runs agents on the backend's commands."""
