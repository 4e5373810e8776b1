"""LPIPS as a loss: the distance lives in :mod:`lsap.nets.lpips` (re-exported here)."""

from lsap.nets.lpips import LPIPSLoss, torchvision_features_to_lpips

__all__ = ["LPIPSLoss", "torchvision_features_to_lpips"]
