"""dlib's face-recognition ResNet as a list of plain operations, read from dlib's own XML dump.

`net_to_xml` (see `tools/dlib_dump/net_to_xml.cpp`) writes the network from the loss layer down to the
input, with every parameter printed to 9 significant digits (exact for float32). This module reads that
file, walks it in forward order and folds what TFLite would fold anyway, in float64 so the folding adds
no error of its own:

- the input normalisation `(pixel - mean) / 256` into the stem convolution (its padding is 0, so no
  padded zero ever sees the shift and the fold is exact);
- every `affine` layer (dlib's frozen batch norm: per-channel scale and shift) into the convolution
  before it.

What remains is convolutions (with an optional ReLU), pools, tags/skips and dlib's `add_prev`, which
adds tensors of different shapes by zero-padding the smaller one at the end of each dimension.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Conv:
    """A convolution with weights in HWIO layout; `pad` is dlib's symmetric padding."""

    weights: F64
    bias: F64
    stride: int
    pad: int
    relu: bool = False


@dataclass(frozen=True)
class Pool:
    """Max or average pooling; size 0 means dlib's `avg_pool_everything` (global average)."""

    kind: str
    size: int
    stride: int
    pad: int


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True)
class Tag:
    id: int


@dataclass(frozen=True)
class Skip:
    id: int


@dataclass(frozen=True)
class AddPrev:
    """Adds the tensor tagged `tag` to the current one; shapes may differ (dlib zero-pads)."""

    tag: int


@dataclass(frozen=True)
class Dense:
    """`fc_no_bias`: weights (inputs, outputs)."""

    weights: F64


Op = Conv | Pool | Relu | Tag | Skip | AddPrev | Dense


@dataclass(frozen=True)
class DlibNet:
    ops: list[Op]
    input_size: int
    mean_rgb: tuple[float, float, float]
    input_scale: float
    distance_threshold: float


def _values(element: ET.Element) -> F64:
    return np.array((element.text or "").split(), dtype=np.float64)


def _int(element: ET.Element, name: str) -> int:
    return int(element.attrib[name])


def _square(element: ET.Element, a: str, b: str) -> int:
    if element.attrib[a] != element.attrib[b]:
        raise ValueError(f"{element.tag}: {a} != {b} is not supported")
    return _int(element, a)


def _read_raw_layers(xml_path: Path) -> tuple[list[tuple[str, ET.Element]], ET.Element, ET.Element]:
    """Returns (kind, element) pairs in forward order, the input element and the loss element."""
    root = ET.parse(xml_path).getroot()
    layers = root.findall("layer")
    if not layers:
        raise ValueError(f"{xml_path}: no <layer> elements; is this a dlib net_to_xml file?")
    forward: list[tuple[str, ET.Element]] = []
    input_element = loss_element = None
    for layer in reversed(layers):
        kind = layer.attrib["type"]
        if kind in ("tag", "skip"):
            forward.append((kind, layer))
            continue
        (child,) = list(layer)
        if kind == "input":
            input_element = child
        elif kind == "loss":
            loss_element = child
        else:
            forward.append((child.tag, child))
    if input_element is None or loss_element is None:
        raise ValueError(f"{xml_path}: missing input or loss layer")
    return forward, input_element, loss_element


def _conv_from(element: ET.Element, in_channels: int) -> Conv:
    filters = _int(element, "num_filters")
    size = _square(element, "nr", "nc")
    values = _values(element)
    n_weights = filters * in_channels * size * size
    has_bias = element.attrib.get("use_bias", "true") == "true"
    expected = n_weights + (filters if has_bias else 0)
    if values.size != expected:
        raise ValueError(f"con layer: expected {expected} parameters, found {values.size}")
    oihw = values[:n_weights].reshape(filters, in_channels, size, size)
    bias = values[n_weights:] if has_bias else np.zeros(filters)
    return Conv(
        weights=oihw.transpose(2, 3, 1, 0).copy(),
        bias=bias.copy(),
        stride=_square(element, "stride_y", "stride_x"),
        pad=_square(element, "padding_y", "padding_x"),
    )


def _fold_affine(conv: Conv, element: ET.Element) -> Conv:
    values = _values(element)
    channels = conv.bias.size
    if values.size != 2 * channels:
        raise ValueError(f"affine layer: expected {2 * channels} parameters, found {values.size}")
    gamma, beta = values[:channels], values[channels:]
    return Conv(conv.weights * gamma, conv.bias * gamma + beta, conv.stride, conv.pad, conv.relu)


def _fold_input(conv: Conv, mean_rgb: F64, scale: float) -> Conv:
    """conv((x - m) / s) = conv'(x) with W' = W / s and b' = b - sum(W * m) / s (exact when pad = 0)."""
    if conv.pad != 0:
        raise ValueError("the input normalisation can only be folded into an unpadded first convolution")
    weights = conv.weights / scale
    bias = conv.bias - np.einsum("hwio,i->o", weights, mean_rgb)
    return Conv(weights, bias, conv.stride, conv.pad, conv.relu)


def read_dlib_net(xml_path: Path) -> DlibNet:
    """Parses a dlib `net_to_xml` dump into folded forward operations."""
    forward, input_element, loss_element = _read_raw_layers(xml_path)
    if input_element.tag != "input_rgb_image_sized":
        raise ValueError(f"unsupported input layer {input_element.tag}")
    mean = np.array([float(input_element.attrib[c]) for c in ("r", "g", "b")])
    input_scale = 256.0  # dlib's input_rgb_image divides by 256 after subtracting the mean
    channels = 3
    tag_channels: dict[int, int] = {}
    ops: list[Op] = []
    for kind, element in forward:
        if kind == "tag":
            tag_channels[_int(element, "id")] = channels
            ops.append(Tag(_int(element, "id")))
        elif kind == "skip":
            channels = tag_channels[_int(element, "id")]
            ops.append(Skip(_int(element, "id")))
        elif kind == "con":
            conv = _conv_from(element, channels)
            if not any(isinstance(op, Conv) for op in ops):
                conv = _fold_input(conv, mean, input_scale)
            ops.append(conv)
            channels = conv.bias.size
        elif kind == "affine_con":
            last = ops[-1]
            if not isinstance(last, Conv) or last.relu:
                raise ValueError("an affine layer that does not follow a convolution cannot be folded")
            ops[-1] = _fold_affine(last, element)
        elif kind == "relu":
            last = ops[-1]
            if isinstance(last, Conv) and not last.relu:
                ops[-1] = Conv(last.weights, last.bias, last.stride, last.pad, relu=True)
            else:
                ops.append(Relu())
        elif kind in ("max_pool", "avg_pool"):
            ops.append(
                Pool(
                    kind=kind.removesuffix("_pool"),
                    size=_square(element, "nr", "nc"),
                    stride=_square(element, "stride_y", "stride_x"),
                    pad=_square(element, "padding_y", "padding_x"),
                )
            )
        elif kind == "add_prev":
            add_tag = _int(element, "tag")
            ops.append(AddPrev(add_tag))
            channels = max(channels, tag_channels[add_tag])
        elif kind == "fc_no_bias":
            outputs = _int(element, "num_outputs")
            values = _values(element)
            if values.size != channels * outputs:
                raise ValueError(f"fc_no_bias: expected {channels * outputs} parameters, found {values.size}")
            ops.append(Dense(values.reshape(channels, outputs)))
            channels = outputs
        else:
            raise ValueError(f"unsupported dlib layer <{kind}>")
    return DlibNet(
        ops=ops,
        input_size=_square(input_element, "nr", "nc"),
        mean_rgb=(float(mean[0]), float(mean[1]), float(mean[2])),
        input_scale=input_scale,
        distance_threshold=float(loss_element.attrib.get("distance_threshold", "0.6")),
    )


def census(net: DlibNet) -> dict[str, int]:
    """Counts of each operation, to compare with dlib's own layer census."""
    counts: dict[str, int] = {}
    for op in net.ops:
        name = type(op).__name__
        if isinstance(op, Pool):
            name = f"{op.kind}_pool" + ("_global" if op.size == 0 else "")
        counts[name] = counts.get(name, 0) + 1
    return counts
