#!/bin/sh
# Makes (or reuses) the example app's virtual environment and prints its directory.
#   examples/fastapi-auth/venv.sh [DIR]      (default: .venv beside this script)
# Idempotent: the venv is rebuilt only when requirements.txt changed since it was made.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-$here/.venv}
if [ -x "$venv/bin/python" ] && cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
    echo "$venv"
    exit 0
fi
if ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "venv.sh: python3 cannot make virtual environments: apt-get install python3-venv" >&2
    exit 1
fi
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
cp "$here/requirements.txt" "$venv/requirements.txt"
echo "$venv"
