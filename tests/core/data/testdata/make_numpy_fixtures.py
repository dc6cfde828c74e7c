#!/usr/bin/python3
"""Writes the .npy fixtures of npy_test.cc with NumPy itself (the independent reference).

Run with Debian's interpreter and python3-numpy: /usr/bin/python3 make_numpy_fixtures.py
"""
import io
import os

import numpy as np
from numpy.lib import format as npy_format

HERE = os.path.dirname(os.path.abspath(__file__))


def save(name, array, version=None):
    with open(os.path.join(HERE, name), "wb") as f:
        if version is None:
            np.save(f, array)
        else:
            npy_format.write_array(f, array, version=version)


# Two 3x2 RGB images, channels last (NumPy / PIL order); pixel (n, h, w, c) = 7 * flat index.
save("images_nhwc_uint8.npy", (np.arange(2 * 3 * 2 * 3, dtype=np.uint8) * 7).reshape(2, 3, 2, 3))
save("labels_int64.npy", np.array([3, 1], dtype=np.int64))
# Two 2x2 grey images as float32.
save("images_float32.npy", (np.arange(8, dtype=np.float32) / 8 - 0.25).reshape(2, 2, 2))
# A format 2.0 file (4-byte header length).
save("labels_uint16_v2.npy", np.array([1, 0], dtype=np.uint16), version=(2, 0))
# Fortran order and big-endian: refused by name.
save("fortran_order.npy", np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)))
save("big_endian.npy", np.array([1.0, 2.0], dtype=">f4"))
