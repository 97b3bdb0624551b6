#!/usr/bin/env bash
# Quick start on a fresh Debian 12 host: install what kumo needs, build it, start a single-host kumo on
# its embedded store, build the tiny guest image, run an instance and show it running with its IP and
# console. Re-runnable. Usage: sudo scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
# One cache per checkout path: test binaries embed their sources' directory (CARGO_MANIFEST_DIR),
# so two clones sharing one target dir would run each other's stale binaries against missing paths.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/kumo/target-$(pwd -P | sha256sum | cut -c1-12)}"
DATA="${KUMO_DATA_DIR:-/var/lib/kumo}"
LOG="${KUMO_LOG_FILE:-/var/log/kumo-server.log}"

echo "== building kumo (release)"
cargo build --release --quiet -p kumo
install -m 0755 "$CARGO_TARGET_DIR/release/kumo" /usr/local/bin/kumo

export KUMO_URL="${KUMO_URL:-http://127.0.0.1:8470}"
if ! curl -sf "$KUMO_URL/healthz" >/dev/null; then
  echo "== starting kumo server (data in $DATA, log in $LOG)"
  mkdir -p "$DATA"
  nohup kumo server --data-dir "$DATA" >>"$LOG" 2>&1 &
  echo $! > "$DATA/server.pid"
  for _ in $(seq 300); do curl -sf "$KUMO_URL/healthz" >/dev/null && break; sleep 0.2; done
  curl -sf "$KUMO_URL/healthz" >/dev/null || { echo "kumo server did not start; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
fi
export KUMO_TOKEN="${KUMO_TOKEN:-$(cat "$DATA/admin.token")}"
for _ in $(seq 150); do [ -n "$(kumo --json host list | jq -r '.items[0].id // empty')" ] && break; sleep 0.2; done
kumo host list

echo "== building the tiny guest image"
kumo image build tiny
kumo image list

echo "== running an instance"
kumo instance show hello >/dev/null 2>&1 || \
  kumo instance run --name hello --image tiny --type nano --user-data examples/hello.sh --wait
kumo instance show hello
for _ in $(seq 240); do kumo instance logs hello | grep -q KUMO-READY && break; sleep 0.5; done
echo "== console of hello"
kumo instance logs hello | grep -E "hello from|KUMO-" || kumo instance logs hello | tail -20
echo
echo "kumo is up. Try: kumo instance list | kumo instance console hello (Ctrl-] quits) | kumo instance delete hello"
echo "Stop the server with: kill \$(cat $DATA/server.pid)"
