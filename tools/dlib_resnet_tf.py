"""The folded dlib ResNet (`tools/dlib_resnet.py`) as a TensorFlow function, ready for the TFLite converter.

Only `tools/` imports TensorFlow; the runtime runs the resulting .tflite files with LiteRT.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from dlib_resnet import AddPrev, Conv, Dense, DlibNet, Op, Pool, Relu, Skip, Tag


def _padded_to(x: Any, rows: int, cols: int, channels: int) -> Any:
    """dlib's add_prev: a smaller tensor counts as zeros beyond its end in every dimension."""
    shape = x.shape
    pad_r, pad_c, pad_k = rows - shape[1], cols - shape[2], channels - shape[3]
    if pad_r == pad_c == pad_k == 0:
        return x
    return tf.pad(x, [[0, 0], [0, pad_r], [0, pad_c], [0, pad_k]])


def _add_prev(x: Any, other: Any) -> Any:
    rows = max(x.shape[1], other.shape[1])
    cols = max(x.shape[2], other.shape[2])
    channels = max(x.shape[3], other.shape[3])
    return _padded_to(x, rows, cols, channels) + _padded_to(other, rows, cols, channels)


def _padding(size: int, stride: int, pad: int) -> str | list[list[int]]:
    """TF padding for dlib's symmetric `pad` (dlib's output size is 1 + (in + 2 pad - k) // stride)."""
    if pad == 0:
        return "VALID"
    if stride == 1 and pad == size // 2:
        return "SAME"
    return [[0, 0], [pad, pad], [pad, pad], [0, 0]]


def _conv(x: Any, op: Conv) -> Any:
    size = op.weights.shape[0]
    weights = tf.constant(op.weights.astype("float32"))
    y = tf.nn.conv2d(x, weights, strides=op.stride, padding=_padding(size, op.stride, op.pad))
    y = tf.nn.bias_add(y, tf.constant(op.bias.astype("float32")))
    return tf.nn.relu(y) if op.relu else y


def _pool(x: Any, op: Pool) -> Any:
    if op.size == 0:
        return tf.reduce_mean(x, axis=[1, 2])
    if op.pad != 0:
        raise ValueError("padded pooling is not used by this network and not supported")
    pool = tf.nn.max_pool2d if op.kind == "max" else tf.nn.avg_pool2d
    return pool(x, ksize=op.size, strides=op.stride, padding="VALID")


def apply_ops(ops: list[Op], x: Any) -> Any:
    """Runs the operations on a NHWC float tensor of raw RGB pixel values (0..255)."""
    tags: dict[int, Any] = {}
    for op in ops:
        if isinstance(op, Conv):
            x = _conv(x, op)
        elif isinstance(op, Pool):
            x = _pool(x, op)
        elif isinstance(op, Relu):
            x = tf.nn.relu(x)
        elif isinstance(op, Tag):
            tags[op.id] = x
        elif isinstance(op, Skip):
            x = tags[op.id]
        elif isinstance(op, AddPrev):
            x = _add_prev(x, tags[op.tag])
        elif isinstance(op, Dense):
            x = tf.matmul(x, tf.constant(op.weights.astype("float32")))
        else:
            raise TypeError(f"unknown operation {op!r}")
    return x


def descriptor_function(net: DlibNet) -> Any:
    """A concrete tf.function: (1, size, size, 3) float32 RGB 0..255 → (1, 128) descriptor."""
    size = net.input_size

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="chip_rgb")])  # type: ignore[untyped-decorator]
    def descriptor(chip_rgb: Any) -> Any:
        return {"descriptor": apply_ops(net.ops, chip_rgb)}

    return descriptor.get_concrete_function()
