"""The C extensions of the distribution (its metadata is in pyproject.toml): the trace
writer's hot loops, trace_export._speedups (packets) and trace_export._rows (events rows to
columns)."""

from setuptools import Extension, setup

_FLAGS = ["-Wall", "-Wextra", "-Werror"]

setup(ext_modules=[
    Extension(f"trace_export.{name}", [f"trace_export/{name}.c"],
              depends=["trace_export/_columns.h"], extra_compile_args=_FLAGS)
    for name in ("_speedups", "_rows")
])
