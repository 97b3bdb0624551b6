#!/usr/bin/env bash
# The whole test suite: installs what it needs, then formatting, lints and every test (unit,
# integration, end-to-end on real QEMU inside private network namespaces). `.ci/run` calls this.
# Usage: sudo scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
# Keep build artefacts outside the clone so repeated runs (and CI) reuse them.
# One cache per checkout path: test binaries embed their sources' directory (CARGO_MANIFEST_DIR),
# so two clones sharing one target dir would run each other's stale binaries against missing paths.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/kumo/target-$(pwd -P | sha256sum | cut -c1-12)}"
export KUMO_TEST_CACHE="${KUMO_TEST_CACHE:-/var/tmp/kumo-test-cache}"
mkdir -p "$CARGO_TARGET_DIR" "$KUMO_TEST_CACHE"

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== tiny guest (Debian packages are fetched once here: the tests run in private namespaces without a network)"
cargo build --quiet -p kumo
"$CARGO_TARGET_DIR/debug/kumo" image build tiny --no-import \
  --cache-dir "$KUMO_TEST_CACHE/debs" --out-dir "$KUMO_TEST_CACHE/tiny"
echo "== Debian cloud image (built once from Debian packages, then cached; ~4 min cold)"
bash scripts/build-debian-image.sh "$KUMO_TEST_CACHE/debian-image/debian-12.qcow2"
echo "== tests"
cargo nextest run --workspace --profile ci "$@"
