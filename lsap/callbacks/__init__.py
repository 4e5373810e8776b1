"""Lightning callbacks: writing inversion results, logging reconstruction and edit grids."""

from lsap.callbacks.edit_grid import EditGridCallback
from lsap.callbacks.prediction_writer import InversionWriter
from lsap.callbacks.reconstruction_grid import ReconstructionGridCallback

__all__ = ["EditGridCallback", "InversionWriter", "ReconstructionGridCallback"]
