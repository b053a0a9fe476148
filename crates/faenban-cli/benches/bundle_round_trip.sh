#!/bin/bash
# The sealed bundle's round trip with the release binaries, against a
# direct sync of the same amount of work: a laptop of N synthetic households
# exports its outbox in letters sealed to the server; a courier laptop
# imports them (it cannot read them), hands them on at its sync, and brings
# the server's sealed reply back, which the first laptop opens.
#
#   crates/faenban-cli/benches/bundle_round_trip.sh [HOUSEHOLDS]   (default 2000)
set -euo pipefail
N=${1:-2000}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" \
    -p faenban-cli -p faenban-server -p faenban-fixtures
R=${CARGO_TARGET_DIR:-$ROOT/target}/release
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
cd "$D"
"$R/faenban-server" serve --data srv --listen 127.0.0.1:0 > addr.txt 2>/dev/null &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 50); do [ -s addr.txt ] && break; sleep 0.1; done
URL=$(head -1 addr.txt)
OFFICE=$("$R/faenban-server" account add --data srv --name office --role province 2>/dev/null)
# A courier of another province: its own pull is empty, so its sync
# measures the hand-over alone.
COURIER=$("$R/faenban-server" account add --data srv --name courier --role volunteer --area 46010101 2>/dev/null)
"$R/faenban-fixtures" --db offline.db --households "$N" > /dev/null
"$R/faenban-fixtures" --db direct.db --households "$N" --seed 2569 > /dev/null
"$R/faenban" --db courier.db init --name courier > /dev/null
for db in offline direct; do
    "$R/faenban" --db $db.db login --server "$URL" --token "$OFFICE" > /dev/null 2>&1
done
"$R/faenban" --db courier.db login --server "$URL" --token "$COURIER" > /dev/null 2>&1
waiting() { "$R/faenban" --db "$1" --json status | grep -o '"unpushed_changes": [0-9]*' | grep -o '[0-9]*$'; }
echo "changes waiting on each laptop: $(waiting offline.db)"
t() { local label=$1; shift; /usr/bin/time -f "$label: %e s, %M KB peak" "$@" > /dev/null; }
t "direct sync of the other laptop" "$R/faenban" --db direct.db sync
t "bundle export (sealing)" "$R/faenban" --db offline.db bundle export out.bundle
echo "bundle: $(stat -c %s out.bundle) bytes"
t "bundle import on the courier" "$R/faenban" --db courier.db bundle import out.bundle
t "courier's sync, handing on the letters" "$R/faenban" --db courier.db sync
t "bundle export back" "$R/faenban" --db courier.db bundle export back.bundle
echo "reply bundle: $(stat -c %s back.bundle) bytes"
t "bundle import back (the reply opened)" "$R/faenban" --db offline.db bundle import back.bundle
echo "still waiting on the offline laptop: $(waiting offline.db)"
