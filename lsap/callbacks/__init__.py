"""Lightning callbacks: writing inversion results."""

from lsap.callbacks.prediction_writer import InversionWriter

__all__ = ["InversionWriter"]
