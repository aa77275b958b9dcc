"""Where the contract headers are: ``include/``, package data next to this module."""

from __future__ import annotations

from pathlib import Path

__all__ = ["HEADER_DIR"]

HEADER_DIR = Path(__file__).resolve().parent / "include"
