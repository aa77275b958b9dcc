"""xputrace trace export: stored events to Perfetto traces (Chrome JSON as a fallback)."""

from trace_export.chrome import write_chrome_json
from trace_export.counters import CounterSeries
from trace_export.events import ROW_COLUMNS, EventChunk, from_batches, from_copy, from_rows
from trace_export.perfetto import write_perfetto
from trace_export.stats import ExportStats
from trace_export.tracks import Processes, ProcessInfo

__all__ = ["ROW_COLUMNS", "CounterSeries", "EventChunk", "ExportStats", "ProcessInfo", "Processes",
           "from_batches", "from_copy", "from_rows", "write_chrome_json",
           "write_perfetto"]  # fmt: skip
