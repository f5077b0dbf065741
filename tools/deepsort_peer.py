#!/usr/bin/env python3
"""The Python peer of `tracker eval run`: deep-sort-realtime 1.3.2 on a MOT
detection file whose columns after the tenth are the appearance embedding.

Same convention as `tracker eval run`:
- every frame from 1 to the last frame of the file is a time step, including
  frames without detections (an empty update, so tracks age);
- every detection is used whatever its score (no confidence threshold, no
  NMS: deep-sort-realtime's default nms_max_overlap=1.0 turns NMS off);
  detections with w <= 0 or h <= 0 are dropped (deep-sort-realtime drops the
  box but not its embedding, which would shift the embeddings; we drop both);
- after each update, every track that is confirmed and was matched this
  frame (time_since_update == 0) is written as
  `frame,track_id,x,y,w,h,1,-1,-1,-1`, the box being the Kalman state after
  the update (to_ltwh(orig=False)), not the detection;
- only the update loop is timed (parsing and writing are not), and one JSON
  line goes to stdout:
  {"tracker":"deep-sort-realtime","frames":N,"boxes":M,"seconds":S}
  where N is the number of time steps and M the number of detections fed in,
  over all `--repeat` runs (each with a fresh tracker).

Requirements: tools/peer-requirements.txt (no torch: embedder=None).
"""

import argparse
import json
import os
import sys
import time

# One BLAS thread, set before numpy loads: the matrices are tiny and the loop
# is sequential (like `tracker eval run`); threads only add contention, 20x
# slower on a loaded 2-core machine.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from deep_sort_realtime.deepsort_tracker import DeepSort  # noqa: E402


def read_detections(path):
    """Returns {frame: [(ltwh, conf, embedding)]} and the last frame number."""
    by_frame = {}
    last = 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.replace(",", " ").split()
            if not fields:
                continue
            if len(fields) < 11:
                sys.exit(f"{path}:{number}: expected 10 MOT columns and an embedding, found {len(fields)} columns")
            try:
                values = [float(v) for v in fields]
            except ValueError as error:
                sys.exit(f"{path}:{number}: {error}")
            frame = int(values[0])
            x, y, w, h, conf = values[2:7]
            last = max(last, frame)
            if frame < 1 or not (w > 0 and h > 0):
                continue
            embedding = np.asarray(values[10:], dtype=np.float32)
            by_frame.setdefault(frame, []).append(([x, y, w, h], conf, embedding))
    return by_frame, last


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", required=True, help="MOT rows with embeddings after column 10")
    parser.add_argument("--out", required=True, help="MOT track rows written here")
    parser.add_argument("--max-age", type=int, default=30)
    parser.add_argument("--n-init", type=int, default=3)
    parser.add_argument("--max-iou-distance", type=float, default=0.7)
    parser.add_argument("--max-cosine-distance", type=float, default=0.2)
    parser.add_argument("--nn-budget", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="track the file this many times (timing); tracks of the first run are written")
    args = parser.parse_args()
    if args.repeat < 1:
        sys.exit("--repeat must be at least 1")

    by_frame, last = read_detections(args.detections)
    steps = []
    for frame in range(1, last + 1):
        dets = by_frame.get(frame, [])
        steps.append((frame, [(ltwh, conf) for ltwh, conf, _ in dets], [e for _, _, e in dets]))
    boxes = sum(len(raw) for _, raw, _ in steps)

    out = []
    seconds = 0.0
    for run in range(args.repeat):
        tracker = DeepSort(
            max_age=args.max_age,
            n_init=args.n_init,
            max_iou_distance=args.max_iou_distance,
            max_cosine_distance=args.max_cosine_distance,
            nn_budget=args.nn_budget,
            embedder=None,
        )
        start = time.perf_counter()
        for frame, raw, embeds in steps:
            for track in tracker.update_tracks(raw, embeds=embeds):
                if run == 0 and track.is_confirmed() and track.time_since_update == 0:
                    out.append((frame, int(track.track_id), track.to_ltwh(orig=False)))
        seconds += time.perf_counter() - start

    with open(args.out, "w", encoding="utf-8") as f:
        for frame, track_id, (x, y, w, h) in out:
            f.write(f"{frame},{track_id},{x:.3f},{y:.3f},{w:.3f},{h:.3f},1,-1,-1,-1\n")

    print(json.dumps({"tracker": "deep-sort-realtime", "frames": len(steps) * args.repeat, "boxes": boxes * args.repeat, "seconds": seconds}))


if __name__ == "__main__":
    main()
