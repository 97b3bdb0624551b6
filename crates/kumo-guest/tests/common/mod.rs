//! Shared by the kumo-guest integration tests.

use std::path::PathBuf;

/// Stable cache for downloaded `.deb`s, reused across runs and CI jobs:
/// `$KUMO_TEST_CACHE` or `/var/tmp/kumo-test-cache`.
pub fn test_cache() -> PathBuf {
    std::env::var_os("KUMO_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/kumo-test-cache"))
        .join("debs")
}

/// Build the tiny guest into `out` (using the shared `.deb` cache), failing with the packages to
/// install when the Debian tools are missing.
pub fn build(out: &std::path::Path) -> kumo_guest::TinyGuest {
    kumo_testutil::require("apt-get", "apt");
    kumo_testutil::require("apt-cache", "apt");
    kumo_testutil::require("dpkg-deb", "dpkg");
    kumo_guest::build_tiny(&test_cache(), out)
        .unwrap_or_else(|e| panic!("build_tiny failed: {e:#}"))
}
