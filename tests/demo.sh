#!/usr/bin/env bash
# Shield demo: an S3 emulator (s3rver) seeded with sample e-books, and Shield in front.
#
#   tests/demo.sh                  run until Ctrl-C (what `make run` does)
#   DEMO_SELFTEST=1 tests/demo.sh  download one book through Shield, compare its SHA-256
#                                  with the seeded file, stop everything, exit 0/1
#
# Environment: SHIELD_BIN (default build/shield), DEMO_PORT (Shield, default 8080),
# DEMO_S3_PORT (s3rver, default 4569), DEMO_CONF (default conf/demo.conf),
# PYTHON (default /usr/bin/python3). Non-default ports are written into a temporary
# copy of the config; the original is never modified.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHIELD_BIN=${SHIELD_BIN:-$ROOT/build/shield}
DEMO_PORT=${DEMO_PORT:-8080}
DEMO_S3_PORT=${DEMO_S3_PORT:-4569}
DEMO_CONF=${DEMO_CONF:-$ROOT/conf/demo.conf}
PYTHON=${PYTHON:-/usr/bin/python3}
S3RVER=$ROOT/tests/node_modules/.bin/s3rver
SELFTEST=${DEMO_SELFTEST:-0}
BUCKET=ebooks

export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
unset AWS_SESSION_TOKEN AWS_PROFILE || true
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=23}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

[ -x "$SHIELD_BIN" ] || die "$SHIELD_BIN not built (run make)"
[ -x "$S3RVER" ] || die "$S3RVER missing (run make deps, or: cd tests && npm ci)"
[ -f "$DEMO_CONF" ] || die "$DEMO_CONF missing"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT PID NAME SECONDS: until PORT accepts, PID dies, or the deadline.
wait_port() {
    local deadline=$((SECONDS + $4))
    until port_open "$1"; do
        kill -0 "$2" 2>/dev/null || die "$3 exited before listening on $1"
        [ "$SECONDS" -lt "$deadline" ] || die "$3 did not listen on $1 within $4 s"
        sleep 0.1
    done
}

for p in "$DEMO_PORT" "$DEMO_S3_PORT"; do
    ! port_open "$p" || die "port $p is busy (set DEMO_PORT / DEMO_S3_PORT)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/shield-demo.XXXXXX")
S3_PID='' SHIELD_PID=''
cleanup() {
    local rc=$?
    trap - INT TERM EXIT
    if [ -n "$SHIELD_PID" ] && kill -0 "$SHIELD_PID" 2>/dev/null; then
        kill -TERM "$SHIELD_PID" 2>/dev/null || true
        wait "$SHIELD_PID" 2>/dev/null || true
    fi
    if [ -n "$S3_PID" ] && kill -0 "$S3_PID" 2>/dev/null; then
        kill -TERM "$S3_PID" 2>/dev/null || true
        wait "$S3_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
if [ "$SELFTEST" = 1 ]; then trap 'exit 130' INT; else trap 'exit 0' INT; fi  # Ctrl-C = done
trap 'exit 143' TERM

# ---- S3 emulator, seeded with sample books ------------------------------------
mkdir -p "$TMP/s3" "$TMP/books"
"$S3RVER" -d "$TMP/s3" -a 127.0.0.1 -p "$DEMO_S3_PORT" --configure-bucket "$BUCKET" \
    >"$TMP/s3rver.log" 2>&1 &
S3_PID=$!
say "generating sample books"
"$PYTHON" "$ROOT/tests/books.py" "$TMP/books" >"$TMP/books.list"
wait_port "$DEMO_S3_PORT" "$S3_PID" s3rver 30

"$PYTHON" - "$DEMO_S3_PORT" "$BUCKET" "$TMP/books" "$TMP/books.list" <<'PY' || die "seeding s3rver failed"
import sys, time, mimetypes
from pathlib import Path
import botocore.session
from botocore.config import Config
port, bucket, d, names = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
s3 = botocore.session.get_session().create_client(
    's3', region_name='us-east-1', endpoint_url=f'http://127.0.0.1:{port}',
    aws_access_key_id='S3RVER', aws_secret_access_key='S3RVER',
    config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 3}))
deadline = time.monotonic() + 30
while True:  # the port is open; wait until the bucket answers too
    try:
        s3.head_bucket(Bucket=bucket)
        break
    except Exception:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
types = {'.epub': 'application/epub+zip', '.pdf': 'application/pdf', '.html': 'text/html'}
for name in names.read_text().split():
    p = d / name
    s3.put_object(Bucket=bucket, Key=name, Body=p.read_bytes(),
                  ContentType=types.get(p.suffix, 'application/octet-stream'))
    print(f'demo: seeded s3://{bucket}/{name} ({p.stat().st_size:,} bytes)')
PY

# ---- Shield ------------------------------------------------------------------------
CONF=$TMP/demo.conf
sed -e "s/\(address *= *\"[^\"]*:\)8080\"/\1$DEMO_PORT\"/" \
    -e "s#\(endpoint *= *\"http://[^\"]*:\)4569\"#\1$DEMO_S3_PORT\"#" "$DEMO_CONF" >"$CONF"
grep -q ":$DEMO_PORT\"" "$CONF" || die "could not find the listen port 8080 in $DEMO_CONF"
grep -q ":$DEMO_S3_PORT\"" "$CONF" || die "could not find the endpoint port 4569 in $DEMO_CONF"

"$SHIELD_BIN" -t -c "$CONF" || die "Shield rejected $CONF"
if [ "$SELFTEST" = 1 ]; then
    "$SHIELD_BIN" -c "$CONF" 2>"$TMP/shield.log" &
else
    "$SHIELD_BIN" -c "$CONF" &
fi
SHIELD_PID=$!
wait_port "$DEMO_PORT" "$SHIELD_PID" shield 30
BASE="http://127.0.0.1:$DEMO_PORT"
BOOK=$(grep -m1 '\.epub$' "$TMP/books.list")
PDF=$(grep -m1 '\.pdf$' "$TMP/books.list")

if [ "$SELFTEST" = 1 ]; then
    fail() {
        say "SELFTEST FAILED: $*"
        echo '--- shield stderr (tail) ---'; tail -n 40 "$TMP/shield.log" || true
        exit 1
    }
    curl -sS --max-time 60 -o "$TMP/download" -D "$TMP/headers" -w '%{http_code}\n' \
        "$BASE/$BOOK" >"$TMP/code" || fail "curl $BASE/$BOOK failed"
    [ "$(cat "$TMP/code")" = 200 ] || fail "GET /$BOOK gave HTTP $(cat "$TMP/code")"
    want=$(sha256sum "$TMP/books/$BOOK" | cut -d' ' -f1)
    got=$(sha256sum "$TMP/download" | cut -d' ' -f1)
    [ "$want" = "$got" ] || fail "SHA-256 mismatch for $BOOK: seeded $want, got $got"
    grep -qi '^x-cache: ' "$TMP/headers" || fail "no X-Cache header"
    kill -TERM "$SHIELD_PID"
    rc=0; wait "$SHIELD_PID" || rc=$?
    SHIELD_PID=''
    [ "$rc" = 0 ] || fail "Shield exited with $rc at SIGTERM"
    if grep -Eq 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$TMP/shield.log"; then
        fail "sanitizer report in Shield's stderr"
    fi
    say "OK $BOOK sha256=$got"
    exit 0
fi

cat <<EOF

Shield is listening on $BASE (origin: s3rver on 127.0.0.1:$DEMO_S3_PORT, bucket $BUCKET).
Try:
  curl -s $BASE/ | head                                 # index.html (default root object)
  curl -o /tmp/$BOOK $BASE/$BOOK       # download a book
  curl -I $BASE/$PDF                     # HEAD
  curl -s -r 0-99 $BASE/$PDF | head -c 100; echo         # a Range request
  curl -i $BASE/no-such-book.epub                       # 404 from S3 (XML)
Books: $(tr '\n' ' ' <"$TMP/books.list")
Press Ctrl-C to stop.
EOF
wait "$SHIELD_PID" || true
say "Shield exited"
