"""Accelerated CUDA path (not built yet): every entry returns ``None`` so callers use
the reference implementation."""

from __future__ import annotations


def upfirdn2d(x, f, up, down, padding, flip_filter, gain):
    return None


def bias_act(x, b, dim, act, alpha, gain, clamp):
    return None


def modulated_conv2d(x, weight, styles, demodulate, up, resample_filter):
    return None
