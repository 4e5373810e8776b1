"""Optimisers."""

from lsap.optim.ranger import Lookahead, Ranger

__all__ = ["Lookahead", "Ranger"]
