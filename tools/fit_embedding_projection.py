#!/usr/bin/env python3
"""Fits a linear projection of the appearance embedder's 1280-d features to
fewer dimensions (128) on person crops of a video, and writes the embedder
with the projection appended as a new ONNX model.

    fit_embedding_projection.py --embedder mobilenetv2-embedder.onnx \
        --detector yolov3-tiny.onnx --video vtest.avi \
        --output mobilenetv2-embedder-128.onnx

The crops are the ones the edge agent embeds: frames decoded by GStreamer and
letterboxed as tools/quantize_detector.py does (its helpers are imported),
the float32 detector's person boxes decoded as vision/src/yolo.rs does
(YOLOv3 heads, score = objectness x class probability >= 0.3, NMS at IoU
0.45: the agent's defaults), mapped back to frame pixels and clipped, then
each box resized bilinearly (pixel-centre alignment, fractional box edges)
to 128x64 and normalised with the ImageNet mean and std
(vision/src/letterbox.rs crop_resize_into, edge-agent/src/inference.rs).

Two projections are fitted on the crops of every `--every`-th frame from 0
(frames 0, 8, 16, ... by default): mean-centering + PCA (`centred`), and the
same without centering (`uncentred`: the top right singular vectors of the
features as they are, the axes that keep most of their squared norm). Their
quality is measured on held-out frames only (frames t and t + `--gap` with
t = 3 mod `--every`, so neither is a calibration frame):

- "same person": boxes of frame t and frame t + gap matched one-to-one,
  greedily by IoU (highest first), when the IoU is at least 0.6;
- "different people": every pair of distinct boxes in one frame;

and the mean cosine similarity of each kind and the ROC AUC of the cosine
(same vs different) are printed for the 1280-d features and both
projections (L2-normalised before the cosine, as the agent does). On
vtest.avi centering costs separation: the centred features' AUC is 0.93
against 0.96 for 1280-d, whatever the dimension (1280, 256, 128 or 64 give
0.92 to 0.93), while the uncentred 128-d projection keeps it (0.965). The
ImageNet features share a large common component, and how much of it a crop
has is itself part of what tells people apart. So the model gets the
uncentred projection unless `--projection centred` is asked for.

The output model is the embedder's graph with `MatMul(components)` appended
(after `Sub(mean)` for the centred projection): input `images` as before,
output `embedding` float32 [batch, components], not L2-normalised (the agent
normalises). ONNX metadata key `argus.embedding_projection` records how it
was made and its held-out figures. The 1280-d model is left as it is.

Needs: onnxruntime, onnx, numpy (tools/quantize-requirements.txt) and
gst-launch-1.0 with the libav decoders.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from quantize_detector import detector_spec, frames, letterbox, save_with_metadata

PROVENANCE_KEY = "argus.embedding_projection"
# The agent's defaults (edge-agent/src/config.rs, inference.rs).
SCORE_THRESHOLD = np.float32(0.3)
NMS_IOU = np.float32(0.45)
PERSON = 0
CROP_H, CROP_W = 128, 64
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SAME_MIN_IOU = 0.6
# The two projections fitted and compared: the top principal axes of the
# centred features (PCA), or of the features as they are (the axes of most
# energy, i.e. PCA without centering).
PROJECTIONS = {
    "uncentred": "projection onto the top right singular vectors of the uncentred features",
    "centred": "mean-centering + PCA",
}


def head_specs(text: str) -> list[tuple[str, int, np.ndarray]]:
    """(output, classes, anchors [A, 2]) of each `head=yolo,...` part."""
    heads = []
    for part in text.split(";")[1:]:
        fields = dict(f.split("=", 1) for f in part[len("head="):].split(",") if "=" in f)
        if not part.startswith("head=yolo"):
            sys.exit(f"only YOLOv3 heads are supported, not {part!r}")
        anchors = np.array(fields["anchors"].split(), np.float32).reshape(-1, 2)
        heads.append((fields["out"], int(fields["classes"]), anchors))
    return heads


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1 / (1 + np.exp(-x))).astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two [x, y, w, h] boxes."""
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if not (ix > 0 and iy > 0):
        return 0.0
    inter = ix * iy
    return float(inter / (a[2] * a[3] + b[2] * b[3] - inter))


class PersonDetector:
    """The float32 detector with the agent's decoding (vision/src/yolo.rs)."""

    def __init__(self, path: str):
        model = onnx.load(path)
        text, self.width, self.height, _ = detector_spec(model)
        self.heads = head_specs(text)
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """Person boxes [N, 4] (x, y, w, h) in frame pixels, best first."""
        src_h, src_w, _ = rgb.shape
        f32 = np.float32
        scale = min(f32(self.width) / f32(src_w), f32(self.height) / f32(src_h))
        pad_x = np.floor((f32(self.width) - f32(src_w) * scale) / f32(2))
        pad_y = np.floor((f32(self.height) - f32(src_h) * scale) / f32(2))
        outputs = self.session.run([h[0] for h in self.heads],
                                   {"images": letterbox(rgb, self.width, self.height)})
        boxes, scores = [], []
        for (_, classes, anchors), out in zip(self.heads, outputs):
            _, _, grid_h, grid_w = out.shape
            t = out[0].reshape(len(anchors), 5 + classes, grid_h, grid_w)
            rows, cols = np.meshgrid(np.arange(grid_h, dtype=f32),
                                     np.arange(grid_w, dtype=f32), indexing="ij")
            for a, (aw, ah) in enumerate(anchors):
                obj = sigmoid(t[a, 4])
                score = obj * sigmoid(t[a, 5 + PERSON])
                keep = (obj >= SCORE_THRESHOLD) & (score >= SCORE_THRESHOLD)
                cx = (sigmoid(t[a, 0]) + cols) / f32(grid_w) * f32(self.width)
                cy = (sigmoid(t[a, 1]) + rows) / f32(grid_h) * f32(self.height)
                w = np.exp(t[a, 2]) * aw
                h = np.exp(t[a, 3]) * ah
                keep &= np.isfinite(w) & np.isfinite(h) & (w > 0) & (h > 0)
                for y, x in zip(*np.nonzero(keep)):
                    boxes.append([cx[y, x] - w[y, x] / 2, cy[y, x] - h[y, x] / 2,
                                  w[y, x], h[y, x]])
                    scores.append(score[y, x])
        kept: list[np.ndarray] = []
        for i in np.argsort(-np.array(scores, f32), kind="stable"):
            box = np.array(boxes[i], f32)
            if all(iou(k, box) <= NMS_IOU for k in kept):
                kept.append(box)
        out = []
        for b in kept:
            x = (b[0] - pad_x) / scale
            y = (b[1] - pad_y) / scale
            clipped = clip(np.array([x, y, b[2] / scale, b[3] / scale], f32), src_w, src_h)
            if clipped is not None:
                out.append(clipped)
        return np.array(out, f32).reshape(-1, 4)


def clip(box: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """vision::bbox::BBox::clip: None when nothing valid is left."""
    x0, y0 = max(box[0], 0), max(box[1], 0)
    x1, y1 = min(box[0] + box[2], width), min(box[1] + box[3], height)
    out = np.array([x0, y0, x1 - x0, y1 - y0], np.float32)
    return out if np.all(np.isfinite(out)) and out[2] > 0 and out[3] > 0 else None


def crop(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """[3, 128, 64] as vision::letterbox::crop_resize_into makes it."""
    src_h, src_w, _ = rgb.shape
    f32 = np.float32
    region = clip(box, src_w, src_h)
    if region is None:
        return np.broadcast_to((-MEAN / STD)[:, None, None], (3, CROP_H, CROP_W)).copy()

    def axis(start, length, dst, limit):
        step = f32(length) / f32(dst)
        pos = np.clip(f32(start) + (np.arange(dst, dtype=f32) + f32(0.5)) * step - f32(0.5),
                      0, f32(limit - 1))
        lo = pos.astype(np.int64)
        hi = np.minimum(lo + 1, limit - 1)
        return lo, hi, (pos - lo.astype(f32)).astype(f32)

    y0, y1, wy = axis(region[1], region[3], CROP_H, src_h)
    x0, x1, wx = axis(region[0], region[2], CROP_W, src_w)
    img = rgb.astype(f32)
    wx = wx[None, :, None]
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    wy = wy[:, None, None]
    value = top * (1 - wy) + bottom * wy
    return ((value / f32(255) - MEAN) / STD).transpose(2, 0, 1).astype(f32)


def embed(session: ort.InferenceSession, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Raw (not normalised) features [N, D] of the crops of `boxes`."""
    if len(boxes) == 0:
        return np.zeros((0, session.get_outputs()[0].shape[1]), np.float32)
    batch = np.stack([crop(rgb, b) for b in boxes])
    return session.run(None, {"images": batch})[0]


def unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.where(norms > 0, rows / np.maximum(norms, 1e-30), 0)


def same_pairs(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one greedy IoU matches (highest first) with IoU >= 0.6."""
    scored = sorted(((iou(p, q), i, j) for i, p in enumerate(a) for j, q in enumerate(b)),
                    reverse=True)
    used_a, used_b, pairs = set(), set(), []
    for value, i, j in scored:
        if value < SAME_MIN_IOU:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return pairs


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC: P(positive > negative) + P(tie) / 2 (Mann-Whitney)."""
    values = np.concatenate([positive, negative])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def separation(pairs: list[tuple[np.ndarray, np.ndarray]],
               same: list[tuple[int, int, int]],
               different: list[tuple[int, int, int]]) -> tuple[float, float, float]:
    """Mean same cosine, mean different cosine, AUC, for features `pairs`."""
    def cosines(which, second):
        return np.array([float(unit(pairs[p][0][[i]])[0] @ unit(pairs[p][second][[j]])[0])
                         for p, i, j in which])
    same_cos = cosines(same, 1)
    diff_cos = cosines(different, 0)
    return float(same_cos.mean()), float(diff_cos.mean()), auc(same_cos, diff_cos)


def fit_projection(fit: np.ndarray, k: int,
                   centred: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean (zeros when not `centred`), the top `k` axes [k, D] of the rows
    of `fit` less that mean, and the share of their squared norm kept."""
    mean = fit.mean(axis=0) if centred else np.zeros(fit.shape[1])
    _, singular, vt = np.linalg.svd(fit - mean, full_matrices=False)
    energy = singular ** 2
    return mean, vt[:k], float(energy[:k].sum() / energy.sum())


def projected_model(embedder: onnx.ModelProto, mean: np.ndarray | None,
                    components: np.ndarray) -> onnx.ModelProto:
    """The embedder with `(features - mean) @ components.T` appended (no
    `Sub` when `mean` is None)."""
    model = onnx.ModelProto()
    model.CopyFrom(embedder)
    graph = model.graph
    if len(graph.output) != 1:
        sys.exit("the embedder must have exactly one output")
    out = graph.output[0]
    raw = out.name + "_1280"
    for node in graph.node:
        node.output[:] = [raw if o == out.name else o for o in node.output]
    graph.initializer.append(
        numpy_helper.from_array(components.T.astype(np.float32).copy(), "projection_components"))
    projected = raw
    if mean is not None:
        projected = "projection_centred"
        graph.initializer.append(
            numpy_helper.from_array(mean.astype(np.float32)[None, :], "projection_mean"))
        graph.node.append(helper.make_node("Sub", [raw, "projection_mean"], [projected],
                                           name="projection_centre"))
    graph.node.append(helper.make_node("MatMul", [projected, "projection_components"],
                                       [out.name], name="projection_matmul"))
    batch = out.type.tensor_type.shape.dim[0]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(
        out.name, TensorProto.FLOAT,
        [batch.dim_param or batch.dim_value, components.shape[0]]))
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embedder", required=True, help="1280-d embedder (ONNX)")
    ap.add_argument("--detector", required=True, help="float32 detector (ONNX)")
    ap.add_argument("--video", required=True, help="video of people")
    ap.add_argument("--output", required=True, help="projected embedder to write")
    ap.add_argument("--frames", type=int, default=795,
                    help="frames of the video to use, from its start (795: all of vtest.avi)")
    ap.add_argument("--components", type=int, default=128, help="output dimension (128)")
    ap.add_argument("--projection", choices=list(PROJECTIONS), default="uncentred",
                    help="which projection the model gets (uncentred: see the module doc)")
    ap.add_argument("--every", type=int, default=8,
                    help="fit on frames 0, every, 2*every, ... (8)")
    ap.add_argument("--gap", type=int, default=2,
                    help="frames between the two frames of a 'same person' pair (2)")
    args = ap.parse_args()
    if not (0 < args.gap < args.every - 3):
        sys.exit("--gap must be at least 1 and less than --every - 3 "
                 "(pairs t, t + gap with t = 3 mod every must both be held out)")

    detector = PersonDetector(args.detector)
    embedder_model = onnx.load(args.embedder)
    session = ort.InferenceSession(args.embedder, providers=["CPUExecutionProvider"])

    # Every frame is read once; calibration and evaluation frames are disjoint.
    count = args.frames
    calibration = {i for i in range(0, count, args.every)}
    first = {i for i in range(3, count - args.gap, args.every)}
    second = {i + args.gap for i in first}
    fit_rows, held = [], {}
    for index, rgb in frames(args.video, calibration | first | second):
        boxes = detector.detect(rgb)
        features = embed(session, rgb, boxes)
        if index in calibration:
            fit_rows.append(features)
        else:
            held[index] = (boxes, features)
    fit = np.concatenate(fit_rows).astype(np.float64)
    if len(fit) <= args.components:
        sys.exit(f"only {len(fit)} crops in {len(calibration)} calibration frames; "
                 f"need more than {args.components}")
    projections = {name: fit_projection(fit, args.components, name == "centred")
                   for name in PROJECTIONS}
    for name, (_, _, explained) in projections.items():
        print(f"{name} projection fitted on {len(fit)} crops of {len(calibration)} frames "
              f"(every {args.every}th from 0): {args.components} components keep "
              f"{explained:.3f} of the {'variance' if name == 'centred' else 'energy'}",
              file=sys.stderr)

    features = {"1280-d": lambda f: f}
    for name, (mean, components, _) in projections.items():
        features[f"{args.components}-d {name}"] = (
            lambda f, mean=mean, components=components: (f - mean) @ components.T)
    pairs = {name: [] for name in features}
    same, different = [], []
    for t in sorted(first):
        (boxes_a, feat_a), (boxes_b, feat_b) = held[t], held[t + args.gap]
        p = len(pairs["1280-d"])
        for name, project in features.items():
            pairs[name].append((project(feat_a), project(feat_b)))
        same.extend((p, i, j) for i, j in same_pairs(boxes_a, boxes_b))
        different.extend((p, i, j) for i in range(len(boxes_a)) for j in range(i + 1, len(boxes_a)))
    if not same or not different:
        sys.exit("no held-out pairs: the video has too few people")
    quality = {}
    for name in features:
        quality[name] = separation(pairs[name], same, different)
        s, d, a = quality[name]
        print(f"{name}: same person cosine {s:.3f}, different people {d:.3f}, AUC {a:.4f} "
              f"({len(same)} same, {len(different)} different pairs on {2 * len(first)} "
              f"held-out frames, gap {args.gap})", file=sys.stderr)
    raw_auc = quality["1280-d"][2]
    for name in projections:
        auc_k = quality[f"{args.components}-d {name}"][2]
        if auc_k < raw_auc - 0.02:
            print(f"WARNING: the {name} {args.components}-d projection separates people "
                  f"worse than 1280-d (AUC {auc_k:.4f} vs {raw_auc:.4f})", file=sys.stderr)

    mean, components, explained = projections[args.projection]
    chosen = quality[f"{args.components}-d {args.projection}"]
    model = projected_model(embedder_model, mean if args.projection == "centred" else None,
                            components)
    provenance = (
        f"{PROJECTIONS[args.projection]} {fit.shape[1]}->{args.components} fitted on "
        f"{len(fit)} person crops of {len(calibration)} frames of "
        f"{os.path.basename(args.video)} (every {args.every}th from 0; detector "
        f"{os.path.basename(args.detector)}, score 0.3, NMS 0.45); kept "
        f"{explained:.4f} of the {'variance' if args.projection == 'centred' else 'energy'}; "
        f"held-out (frames t, t+{args.gap}, t = 3 mod {args.every}) cosine same person "
        f"{chosen[0]:.3f}, different people {chosen[1]:.3f}, AUC {chosen[2]:.4f} "
        f"(1280-d: {quality['1280-d'][0]:.3f}, {quality['1280-d'][1]:.3f}, {raw_auc:.4f})")
    save_with_metadata(model, {PROVENANCE_KEY: provenance}, args.output)


if __name__ == "__main__":
    main()
