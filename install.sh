#!/usr/bin/env bash
# Install hummingbird on Debian or Ubuntu: the system packages (the corpus synthesizer and its
# General MIDI SoundFont, audio devices, Opus for the codec baseline, ffmpeg for streamed audio in
# the studio, chromium for the studio's browser test), then the Python packages.
# Works as root (a container) and as a user with sudo; `--python-only` skips the system packages;
# `--training` adds the recorded music (about 750 MB of Debian game soundtracks) that retraining the
# codec (`python -m engine train all`) learns from and `eval recordings` judges with.
# The Python packages go into $PYTHON if set, else into python3 when it can install packages
# itself, else into a virtual environment .venv/ made here (Debian's own Python refuses pip).
set -euo pipefail
cd "$(dirname "$0")"
PACKAGES="libfluidsynth3 fluid-soundfont-gm libportaudio2 opus-tools ffmpeg chromium chromium-driver"
# engine/data/recorded.py: six soundtracks to train on, three held out for evaluation
RECORDED_MUSIC="wesnoth-1.16-music ufoai-music warzone2100-music nexuiz-music hyperrogue-music planetblupi-music-ogg asc-music singularity-music drascula-music"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "install.sh: '$*' needs root; run it as root or install sudo" >&2; exit 1
  fi
}

apt_install() {
  local missing=""
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq $missing
  fi
}

case "${1:-}" in
  --python-only) ;;
  --training) apt_install $PACKAGES $RECORDED_MUSIC ;;
  "") apt_install $PACKAGES ;;
  *) echo "install.sh: unknown option $1 (use --python-only or --training)" >&2; exit 2 ;;
esac

python="${PYTHON:-python3}"
managed=$("$python" -c "import sys, sysconfig, pathlib; print(sys.prefix == sys.base_prefix and pathlib.Path(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED').exists())")
if [ -z "${PYTHON:-}" ] && { [ "$managed" = "True" ] || ! "$python" -m pip --version >/dev/null 2>&1; }; then
  "$python" -m venv --help >/dev/null 2>&1 && "$python" -c "import ensurepip" 2>/dev/null || apt_install python3-venv
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  python=.venv/bin/python
  echo "install.sh: the Python packages go into .venv/; activate it before running: source .venv/bin/activate" >&2
fi
"$python" -m pip install -q -r requirements.txt
"$python" -m pip install -q --no-deps basic-pitch==0.4.0  # its TensorFlow dependency is not needed: the ONNX model runs on onnxruntime
