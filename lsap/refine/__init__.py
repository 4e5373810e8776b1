"""Refinements that start from any pivot (an embedding's W+ code) and add what the code
alone cannot reconstruct: HFGI's distortion-consultation features and SAM's per-block
feature offsets. PTI, which tunes the generator's weights, lives in :mod:`lsap.modules.pti`.
"""
