#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine (Python 3.11 + pip), then run it.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k images`.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Debian packages the tests start for real: Chromium for the browser tests (Playwright's own
# browser download is not used), redis-server and nginx for the scale-out tests.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

status=0
# Three test processes on two cores: most live tests wait on servers they started, so a third
# keeps the cores busy. `bash tests/run.sh -n 0` runs in one process.
.venv/bin/python -m pytest -p no:cacheprovider -n 3 --dist loadfile "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: treating that as a failure" >&2
    exit 1
fi
exit "$status"
