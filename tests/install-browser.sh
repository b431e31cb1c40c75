#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the browser tests (tests/browser.py) when they
# are missing. A failure is not fatal: the browser tests then skip and print why.
set -u
if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then exit 0; fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "install-browser: not root or no apt-get: the browser tests will skip" >&2
  exit 0
fi
echo "install-browser: apt-get install chromium chromium-driver" >&2
apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 || true
if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    chromium chromium-driver >/tmp/oomstream-install-browser.log 2>&1; then
  echo "install-browser: apt-get failed (see /tmp/oomstream-install-browser.log): the browser tests will skip" >&2
fi
exit 0
