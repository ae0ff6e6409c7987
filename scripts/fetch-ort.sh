#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library the forecaster loads at run time (ort `load-dynamic`)
# into ./lib, from the official onnxruntime wheel on PyPI. Does nothing when it is already there.
#
#   scripts/fetch-ort.sh            # -> lib/libonnxruntime.so.1.31.1
#   ORT_VERSION=1.31.1 LIB_DIR=lib scripts/fetch-ort.sh
#
# The daemon looks for the library at `forecast.ort_library`, then $ORT_DYLIB_PATH, then next to
# its executable, then in ./lib (see src/forecast/onnx.rs). Without it, forecasts fall back to
# the baseline predictor and say so.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.31.1}"
LIB_DIR="${LIB_DIR:-lib}"
LIB_NAME="libonnxruntime.so.${ORT_VERSION}"
PYTHON="${PYTHON:-python3}"

if [ -f "${LIB_DIR}/${LIB_NAME}" ]; then
  echo "${LIB_DIR}/${LIB_NAME} is present"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64 | Linux-aarch64) ;;
  *)
    echo "fetch-ort.sh: only Linux x86_64/aarch64 wheels are handled here; set forecast.ort_library" >&2
    echo "or ORT_DYLIB_PATH to an ONNX Runtime ${ORT_VERSION} library instead" >&2
    exit 1
    ;;
esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "downloading onnxruntime==${ORT_VERSION} from PyPI …"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
  "onnxruntime==${ORT_VERSION}" -d "$tmp"
wheel="$(ls "$tmp"/onnxruntime-"${ORT_VERSION}"-*.whl | head -n1)"
[ -n "$wheel" ] || { echo "fetch-ort.sh: no wheel downloaded" >&2; exit 1; }

mkdir -p "$LIB_DIR"
# A wheel is a zip; python's zipfile avoids depending on `unzip`.
"$PYTHON" - "$wheel" "$LIB_DIR" "$LIB_NAME" <<'EOF'
import shutil, sys, zipfile
wheel, lib_dir, name = sys.argv[1:4]
member = f"onnxruntime/capi/{name}"
with zipfile.ZipFile(wheel) as z:
    if member not in z.namelist():
        sys.exit(f"fetch-ort.sh: {member} is not in {wheel}")
    with z.open(member) as src, open(f"{lib_dir}/{name}.part", "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
mv "${LIB_DIR}/${LIB_NAME}.part" "${LIB_DIR}/${LIB_NAME}"
echo "${LIB_DIR}/${LIB_NAME} installed"
