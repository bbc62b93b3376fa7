#!/usr/bin/env bash
# Install hummingbird on Debian or Ubuntu: the system packages (the corpus synthesizer and its
# General MIDI SoundFont, audio devices, Opus for the codec baseline, ffmpeg for streamed audio in
# the studio, chromium for the studio's browser test), then the Python packages.
# Works as root (a container) and as a user with sudo; `--python-only` skips the system packages.
set -euo pipefail
cd "$(dirname "$0")"
PACKAGES="libfluidsynth3 fluid-soundfont-gm libportaudio2 opus-tools ffmpeg chromium chromium-driver"

if [ "${1:-}" != "--python-only" ]; then
  missing=""
  for pkg in $PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then as_root=""
    elif command -v sudo >/dev/null 2>&1; then as_root="sudo"
    else echo "install.sh: installing$missing needs root; run it as root or install sudo" >&2; exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    $as_root apt-get update -qq
    $as_root apt-get install -y -qq $missing
  fi
fi
"${PYTHON:-python3}" -m pip install -q -r requirements.txt  # PYTHON: the interpreter to install into (default python3)
