#!/usr/bin/env bash
# Installs a software Vulkan driver (Mesa lavapipe) so the wgpu tests have an
# adapter on machines without a GPU. Idempotent: does nothing when the driver
# and the loader are already there. Needs root (or sudo) and apt-get; on other
# systems it says what to install and leaves the decision to the tests (which
# fail in CI when no adapter is found).
set -euo pipefail

have_lavapipe() {
  # grep reads all of ldconfig's output (no -q): quitting at the first match can kill
  # ldconfig with SIGPIPE, which pipefail turns into a failure (exit 141).
  ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null &&
    ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1
}

if have_lavapipe; then
  echo "setup-gpu-ci: lavapipe (mesa-vulkan-drivers) and libvulkan1 already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "setup-gpu-ci: no apt-get; install Mesa's Vulkan drivers (lavapipe) and the Vulkan loader by hand" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup-gpu-ci: not root and no sudo; cannot install mesa-vulkan-drivers" >&2
    exit 0
  fi
fi
echo "setup-gpu-ci: installing mesa-vulkan-drivers libvulkan1"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null
if have_lavapipe; then echo "setup-gpu-ci: lavapipe installed"; else echo "setup-gpu-ci: lavapipe still not found after installing" >&2; fi
