"""Lightning callbacks: writing inversion results, logging edit grids."""

from lsap.callbacks.edit_grid import EditGridCallback
from lsap.callbacks.prediction_writer import InversionWriter

__all__ = ["EditGridCallback", "InversionWriter"]
