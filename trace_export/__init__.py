"""xputrace trace export: stored events to Perfetto traces (Chrome JSON as a fallback)."""
