"""The C extension of the distribution (its metadata is in pyproject.toml):
trace_export._speedups, the trace writer's hot loops in C."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("trace_export._speedups", ["trace_export/_speedups.c"],
                             extra_compile_args=["-Wall", "-Wextra", "-Werror"])])
