#!/usr/bin/env bash
# Installs Chromium (Debian's package) for the browser test (scripts/test-web.sh) when it is
# missing. Needs root (or sudo) and apt-get; elsewhere it says what to install. scripts/test.sh
# runs it in the background while the workspace builds (the download is network-bound); it
# waits for dpkg's lock instead of failing when another apt-get holds it.
set -euo pipefail
if command -v chromium >/dev/null; then
  echo "setup-web-ci: chromium already installed ($(chromium --version 2>/dev/null || echo '?'))"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "setup-web-ci: no apt-get; install Chromium by hand for the browser test" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "setup-web-ci: installing chromium"
lock=(-o DPkg::Lock::Timeout=600)
$sudo apt-get "${lock[@]}" update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get "${lock[@]}" install -y -qq --no-install-recommends chromium >/dev/null
chromium --version
