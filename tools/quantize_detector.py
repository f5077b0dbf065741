#!/usr/bin/env python3
"""Quantises an imported detector (ONNX, float32) to int8 with ONNX Runtime's
static quantisation, calibrated on real frames of a video.

    quantize_detector.py --model yolov3-tiny.onnx --video vtest.avi \
        --output yolov3-tiny-int8.onnx

The frames are decoded by GStreamer (`gst-launch-1.0 ... ! fdsink`, the same
decoder the edge agent uses) and letterboxed exactly as the agent does
(vision/src/letterbox.rs): bilinear with pixel-centre alignment, RGB in
[0, 1], 0.5 grey padding, NCHW. Calibration takes every `--every`-th frame
starting at frame 0, so frames `k * every + every / 2` are left for checking
(edge-agent/tests/models.rs uses frames 4, 20, 36, ... with the defaults).

The result is QDQ (QuantizeLinear/DequantizeLinear around the convolutions,
which ONNX Runtime fuses into QLinearConv; as fast as the QOperator format on
ONNX Runtime 1.31's CPU provider and the format it recommends), weights int8
per output channel in 7 bits (`reduce_range`: x86 CPUs without VNNI multiply
uint8 by int8 with 16-bit saturation, and 7-bit weights cannot saturate; no
loss measured on vtest.avi), activations uint8 with min/max ranges. The head
convolutions, whose outputs are the raw YOLO logits, stay float32
(`--keep-float`; box IoU against float32 0.92 instead of 0.90, for about 4 %
of the int8 model's time), and the graph's outputs are float32 as before, so
the agent decodes the model unchanged. The detector description (ONNX
metadata `argus.detector`) is copied over; the key `argus.quantization`
records how the model was made.

Needs: onnxruntime 1.31 (the version of the agent's library), onnx, numpy
(tools/quantize-requirements.txt) and gst-launch-1.0 with the libav decoders.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

METADATA_KEY = "argus.detector"  # vision/src/yolo.rs METADATA_KEY
PROVENANCE_KEY = "argus.quantization"
PAD_VALUE = np.float32(0.5)  # vision/src/letterbox.rs PAD_VALUE


def detector_spec(model: onnx.ModelProto) -> tuple[str, int, int, list[str]]:
    """The `argus.detector` text, input width and height, and head outputs."""
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        sys.exit(f"the model has no `{METADATA_KEY}` metadata: import it with "
                 "`edge-agent model import-darknet` first")
    text = props[METADATA_KEY]
    width = height = 0
    heads = []
    for part in text.split(";"):
        if part.startswith("input="):
            width, height = (int(v) for v in part[len("input="):].split("x"))
        elif part.startswith("head="):
            fields = dict(f.split("=", 1) for f in part.split(",") if "=" in f)
            heads.append(fields["out"])
    if not (width and height and heads):
        sys.exit(f"cannot read `{METADATA_KEY}` = {text!r}")
    return text, width, height, heads


def video_size(video: str) -> tuple[int, int]:
    """Width and height of the first video stream, from GStreamer's caps."""
    out = subprocess.run(
        ["gst-launch-1.0", "-v", "filesrc", f"location={video}", "!", "decodebin",
         "!", "videoconvert", "!", "video/x-raw,format=RGB", "!", "fakesink",
         "num-buffers=1"],
        check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "fakesink" in line and "caps = video/x-raw" in line:
            fields = dict(f.strip().split("=", 1) for f in line.split(",")[1:] if "=" in f)
            return (int(fields["width"].split(")")[-1]),
                    int(fields["height"].split(")")[-1]))
    sys.exit(f"{video}: GStreamer reported no video caps")


def frames(video: str, indices: set[int]):
    """Yields (index, RGB uint8 [H, W, 3]) for the wanted frame indices."""
    width, height = video_size(video)
    stride = (3 * width + 3) // 4 * 4  # GStreamer rows are 4-byte aligned
    size = stride * height
    proc = subprocess.Popen(
        ["gst-launch-1.0", "-q", "filesrc", f"location={video}", "!", "decodebin",
         "!", "videoconvert", "!", "video/x-raw,format=RGB", "!", "fdsink", "fd=1"],
        stdout=subprocess.PIPE)
    last = max(indices)
    try:
        for index in range(last + 1):
            buf = proc.stdout.read(size)
            if len(buf) < size:
                sys.exit(f"{video} ended after {index} frames; frame {last} was wanted")
            if index in indices:
                rows = np.frombuffer(buf, np.uint8).reshape(height, stride)
                yield index, rows[:, :3 * width].reshape(height, width, 3)
    finally:
        proc.kill()
        proc.wait()


def letterbox(rgb: np.ndarray, dst_w: int, dst_h: int) -> np.ndarray:
    """[1, 3, dst_h, dst_w] float32 as vision::letterbox::letterbox_into makes it."""
    src_h, src_w, _ = rgb.shape
    f32 = np.float32
    scale = min(f32(dst_w) / f32(src_w), f32(dst_h) / f32(src_h))
    pad_x = int(np.floor((f32(dst_w) - f32(src_w) * scale) / f32(2)))
    pad_y = int(np.floor((f32(dst_h) - f32(src_h) * scale) / f32(2)))
    inner_w = min(int(np.round(f32(src_w) * scale)), dst_w - pad_x)
    inner_h = min(int(np.round(f32(src_h) * scale)), dst_h - pad_y)

    def axis(src: int, dst: int):
        step = f32(src) / f32(dst)
        pos = np.clip((np.arange(dst, dtype=f32) + f32(0.5)) * step - f32(0.5), 0, src - 1)
        lo = pos.astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo.astype(f32)).astype(f32)

    y0, y1, wy = axis(src_h, inner_h)
    x0, x1, wx = axis(src_w, inner_w)
    img = rgb.astype(f32)
    wx = wx[None, :, None]
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    wy = wy[:, None, None]
    inner = (top * (1 - wy) + bottom * wy) / f32(255)
    out = np.full((1, 3, dst_h, dst_w), PAD_VALUE, dtype=f32)
    out[0, :, pad_y:pad_y + inner_h, pad_x:pad_x + inner_w] = inner.transpose(2, 0, 1)
    return out


def save_with_metadata(model: onnx.ModelProto, updates: dict[str, str], output: str) -> None:
    """Sets the metadata keys of `updates` on `model` (keeping its others),
    checks it and writes it to `output` atomically (through `output.tmp`)."""
    props = {p.key: p.value for p in model.metadata_props} | updates
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    tmp_out = output + ".tmp"
    onnx.save(model, tmp_out)
    os.replace(tmp_out, output)
    print(f"wrote {output} ({os.path.getsize(output)} bytes)", file=sys.stderr)


class FrameReader(CalibrationDataReader):
    """Feeds the letterboxed calibration frames, one batch of one at a time."""

    def __init__(self, input_name: str, tensors: list[np.ndarray]):
        self.input_name = input_name
        self.tensors = iter(tensors)

    def get_next(self):
        tensor = next(self.tensors, None)
        return None if tensor is None else {self.input_name: tensor}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="float32 detector (ONNX)")
    ap.add_argument("--video", required=True, help="calibration video")
    ap.add_argument("--output", required=True, help="int8 detector to write")
    ap.add_argument("--frames", type=int, default=100, help="calibration frames (100)")
    ap.add_argument("--every", type=int, default=8,
                    help="take frames 0, every, 2*every, ... (8)")
    ap.add_argument("--format", choices=["qdq", "qoperator"], default="qdq",
                    help="ONNX Runtime quantisation format (qdq)")
    ap.add_argument("--keep-float", default="heads",
                    help="comma-separated Conv node names left in float32; "
                         "`heads` = the convolutions feeding the head outputs "
                         "(default), `none` = quantise all")
    args = ap.parse_args()

    model = onnx.load(args.model)
    spec, width, height, heads = detector_spec(model)
    input_name = model.graph.input[0].name

    if args.keep_float == "none":
        keep = []
    elif args.keep_float == "heads":
        # The head outputs are Identity(Conv) in imported models.
        producer = {o: n for n in model.graph.node for o in n.output}
        keep = []
        for out in heads:
            node = producer[out]
            while node.op_type == "Identity":
                node = producer[node.input[0]]
            keep.append(node.name)
    else:
        keep = [n for n in args.keep_float.split(",") if n]

    wanted = {i * args.every for i in range(args.frames)}
    tensors = [letterbox(rgb, width, height) for _, rgb in frames(args.video, wanted)]
    print(f"calibrating on {len(tensors)} frames of {os.path.basename(args.video)} "
          f"(every {args.every}th from 0), keeping {keep or 'nothing'} in float32",
          file=sys.stderr)

    out_dir = os.path.dirname(os.path.abspath(args.output))
    # quantize_static advises (on the root logger) running ONNX Runtime's
    # pre-processing first; imported detectors have batch-norm folded already
    # and nothing for it to fuse.
    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        raw = os.path.join(tmp, "quantized.onnx")
        quantize_static(
            args.model,
            raw,
            FrameReader(input_name, tensors),
            quant_format=QuantFormat.QDQ if args.format == "qdq" else QuantFormat.QOperator,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=keep,
        )
        quantized = onnx.load(raw)

    outputs = {o.name: o for o in quantized.graph.output}
    for out in heads:
        if out not in outputs:
            sys.exit(f"quantisation lost the head output {out}")
        if outputs[out].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            sys.exit(f"head output {out} is no longer float32")

    provenance = (
        f"onnxruntime static int8 ({args.format}), weights int8 (7-bit) per channel, "
        f"activations uint8 min/max over {len(tensors)} frames of "
        f"{os.path.basename(args.video)} (every {args.every}th from 0); "
        f"float32: {','.join(keep) or 'none'}")
    save_with_metadata(quantized, {METADATA_KEY: spec, PROVENANCE_KEY: provenance}, args.output)


if __name__ == "__main__":
    main()
