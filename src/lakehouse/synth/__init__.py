"""Sample data: a landing folder as a photo-sharing app would dump it, dirt included."""

from lakehouse.synth.generate import generate
from lakehouse.synth.history import (
    MANIFEST,
    GenerateConfig,
    GenerateError,
    GenerateReport,
)

__all__ = ["MANIFEST", "GenerateConfig", "GenerateError", "GenerateReport", "generate"]
