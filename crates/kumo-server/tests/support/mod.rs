//! What the app-layer integration tests share: an [`App`] on a SQLite store in a test directory,
//! configured as a small single-host server would be.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use kumo_server::app::{App, AppConfig};
use kumo_server::scheduler::Overcommit;
use kumo_types::PlacementPolicy;

pub fn config(dir: &Path) -> AppConfig {
    AppConfig {
        data_dir: dir.to_path_buf(),
        overcommit: Overcommit::default(),
        placement_policy: PlacementPolicy::Spread,
        host_memory_reserve_mib: 0,
        default_network_cidr: "198.18.0.0/22".into(),
        default_bridge: "kumobr0".into(),
        default_nat: false,
        region: "kumo-1".into(),
    }
}

/// The store file of `dir`.
pub fn store(dir: &Path) -> Arc<dyn kumo_store::Kv> {
    #[allow(clippy::unwrap_used)]
    Arc::new(kumo_store::sqlite::SqliteKv::open(&dir.join("store.db")).unwrap())
}

/// An app on `kv` (several apps on one store are several servers).
pub fn app_on(kv: Arc<dyn kumo_store::Kv>, dir: &Path) -> App {
    App::new(kv, config(dir))
}

/// An app on `dir`'s own store.
pub fn app(dir: &Path) -> App {
    app_on(store(dir), dir)
}

/// One ready host, `h1`, large enough for anything a test asks (64 vCPUs, 256 GiB, 1 TiB).
pub async fn register_host(app: &App) {
    #[allow(clippy::unwrap_used)]
    kumo_server::app::host::register(
        app,
        kumo_types::HostInventory {
            hostname: "h1".into(),
            cpus: 64,
            memory_mib: 256 * 1024,
            disk_free_bytes: 1 << 40,
            disk_total_bytes: 1 << 40,
            ..Default::default()
        },
    )
    .await
    .unwrap();
}
