"""Colour science with ``keras.ops``: sRGB <-> CIELAB (D65) and the CIEDE2000 colour difference.

Every function takes NumPy arrays or backend tensors with the colour channels on
the last axis, broadcasts over all leading axes, and computes in the input's
float dtype (float32 for integer input; pass float64 for reference-grade
precision). NumPy input gives NumPy output.

CIEDE2000 follows G. Sharma, W. Wu, E. N. Dalal, "The CIEDE2000 color-difference
formula: implementation notes, supplementary test data, and mathematical
observations", Color Research and Application 30(1), 2005, equations (1)-(22).
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops
from keras.backend import standardize_dtype

# sRGB (linear) -> CIE XYZ, D65 white, IEC 61966-2-1 primaries.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_DELTA = 6.0 / 29.0
_POW25_7 = 25.0**7


def _as_float(x):
    """``x`` as a backend tensor of a float dtype (integers become float32)."""
    x = ops.convert_to_tensor(x)
    return x if "float" in standardize_dtype(x.dtype) else ops.cast(x, "float32")


def _like_input(result, original):
    return ops.convert_to_numpy(result) if isinstance(original, np.ndarray) else result


def _mix_channels(x, matrix: np.ndarray):
    """``matrix @ x`` for every colour in ``x`` (channels last)."""
    return ops.matmul(x, ops.convert_to_tensor(matrix.T, dtype=x.dtype))


def srgb_to_lab(x):
    """sRGB pixels in 0-255 -> CIELAB (L* in 0-100), via linear RGB and XYZ under D65."""
    original, x = x, _as_float(x)
    c = ops.clip(x / 255.0, 0.0, 1.0)
    linear = ops.where(c <= 0.04045, c / 12.92, ops.power((ops.maximum(c, 0.04045) + 0.055) / 1.055, 2.4))
    xyz = _mix_channels(linear, _RGB_TO_XYZ) / ops.convert_to_tensor(_D65_WHITE, dtype=x.dtype)
    # Cube root above the CIE threshold, the linear segment below it (keeps f continuous near black).
    f = ops.where(
        xyz > _DELTA**3,
        ops.power(ops.maximum(xyz, _DELTA**3), 1.0 / 3.0),
        xyz / (3 * _DELTA**2) + 4.0 / 29.0,
    )
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    lab = ops.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)
    return _like_input(lab, original)


def lab_to_srgb(lab):
    """CIELAB (D65) -> sRGB in 0-255, clipped to the sRGB gamut (for showing Lab images)."""
    original, lab = lab, _as_float(lab)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = ops.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = ops.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0))
    xyz = xyz * ops.convert_to_tensor(_D65_WHITE, dtype=lab.dtype)
    linear = ops.clip(_mix_channels(xyz, _XYZ_TO_RGB), 0.0, 1.0)
    c = ops.where(
        linear <= 0.0031308,
        12.92 * linear,
        1.055 * ops.power(ops.maximum(linear, 0.0031308), 1 / 2.4) - 0.055,
    )
    return _like_input(ops.clip(c, 0.0, 1.0) * 255.0, original)


def _hue(b, a_prime):
    """Hue angle h' in radians, in [0, 2 pi); atan2(0, 0) is 0, as the formula requires."""
    h = ops.arctan2(b, a_prime)
    return ops.where(h < 0, h + 2 * math.pi, h)


def _radians(degrees: float) -> float:
    return degrees * math.pi / 180.0


def ciede2000(lab1, lab2):
    """CIEDE2000 colour difference ΔE00 between CIELAB colours (kL = kC = kH = 1), broadcast."""
    original = lab1 if isinstance(lab1, np.ndarray) else lab2
    lab1, lab2 = _as_float(lab1), _as_float(lab2)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]

    c_bar7 = ops.power((ops.sqrt(a1 * a1 + b1 * b1) + ops.sqrt(a2 * a2 + b2 * b2)) / 2.0, 7)
    g = 0.5 * (1.0 - ops.sqrt(c_bar7 / (c_bar7 + _POW25_7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = ops.sqrt(a1p * a1p + b1 * b1), ops.sqrt(a2p * a2p + b2 * b2)
    h1p, h2p = _hue(b1, a1p), _hue(b2, a2p)

    # Hue edge cases (eqs. 10, 14): an achromatic colour has no hue difference and its
    # mean hue is the unhalved sum; otherwise go the short way round the circle. A hue
    # difference within rounding of 180 degrees counts as 180 (the "<=" branch, as the
    # paper's pairs 10 and 14, which sit exactly there, require); without the tolerance
    # the branch taken there depends on float rounding.
    half_turn = math.pi + 64 * float(np.finfo(standardize_dtype(h1p.dtype)).eps) * math.pi
    achromatic = c1p * c2p == 0.0
    dh = h2p - h1p
    dhp = ops.where(dh > half_turn, dh - 2 * math.pi, ops.where(dh < -half_turn, dh + 2 * math.pi, dh))
    dhp = ops.where(achromatic, 0.0, dhp)
    d_hue = 2.0 * ops.sqrt(c1p * c2p) * ops.sin(dhp / 2.0)
    h_sum = h1p + h2p
    h_bar = ops.where(
        ops.abs(dh) <= half_turn,
        h_sum / 2.0,
        ops.where(h_sum < 2 * math.pi, (h_sum + 2 * math.pi) / 2.0, (h_sum - 2 * math.pi) / 2.0),
    )
    h_bar = ops.where(achromatic, h_sum, h_bar)

    l_bar50_sq = ops.square((l1 + l2) / 2.0 - 50.0)
    cp_bar = (c1p + c2p) / 2.0
    cp_bar7 = ops.power(cp_bar, 7)
    t = (
        1.0
        - 0.17 * ops.cos(h_bar - _radians(30.0))
        + 0.24 * ops.cos(2.0 * h_bar)
        + 0.32 * ops.cos(3.0 * h_bar + _radians(6.0))
        - 0.20 * ops.cos(4.0 * h_bar - _radians(63.0))
    )
    d_theta = _radians(30.0) * ops.exp(-ops.square((h_bar - _radians(275.0)) / _radians(25.0)))
    r_c = 2.0 * ops.sqrt(cp_bar7 / (cp_bar7 + _POW25_7))
    s_l = 1.0 + 0.015 * l_bar50_sq / ops.sqrt(20.0 + l_bar50_sq)
    s_c = 1.0 + 0.045 * cp_bar
    s_h = 1.0 + 0.015 * cp_bar * t
    r_t = -ops.sin(2.0 * d_theta) * r_c

    dl, dc, dhh = (l2 - l1) / s_l, (c2p - c1p) / s_c, d_hue / s_h
    delta = ops.sqrt(ops.maximum(dl * dl + dc * dc + dhh * dhh + r_t * dc * dhh, 0.0))
    return _like_input(delta, original)
