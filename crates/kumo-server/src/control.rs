//! The in-process implementation of the agent's [`ControlPlane`]: in single-host mode the agent runs
//! inside `kumo server` and calls the app layer directly. A remote implementation (internal HTTP API,
//! mTLS) replaces this in multi-host clusters; the agent's logic does not change.

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use kumo_agent::control::ControlPlane;
use kumo_types::{AssignmentSnapshot, Host, HostInventory, InstanceStatus, Result, VolumeStatus};

use crate::app::{App, event, host, instance, snapshot, volume};
use crate::storeutil::{get_json, keys, store_err};

/// The key prefixes whose changes alter what an agent must converge to.
const ASSIGNMENT_PREFIXES: [&str; 10] = [
    keys::INSTANCES,
    keys::VOLUMES,
    keys::SNAPSHOTS,
    keys::NETWORKS,
    keys::SUBNETS,
    keys::PORTS,
    keys::ROUTERS,
    keys::SECURITY_GROUPS,
    keys::FLOATING_IPS,
    keys::KEY_PAIRS,
];

pub struct InProcess {
    pub app: App,
}

#[async_trait]
impl kumo_agent::imagecache::FetchFile for InProcess {
    async fn fetch_image_file(
        &self,
        image_id: &str,
        file: &str,
        dest: &std::path::Path,
    ) -> Result<()> {
        let src = crate::app::image::local_file(&self.app, image_id, file).await?;
        if src == dest {
            return Ok(());
        }
        tokio::fs::copy(&src, dest).await?;
        Ok(())
    }
}

#[async_trait]
impl ControlPlane for InProcess {
    async fn register_host(&self, inventory: HostInventory) -> Result<Host> {
        host::register(&self.app, inventory).await
    }
    async fn heartbeat(&self, host_id: &str) -> Result<()> {
        host::heartbeat(&self.app, host_id).await
    }
    async fn assignments(&self, host_id: &str) -> Result<AssignmentSnapshot> {
        instance::assignments(&self.app, host_id).await
    }
    async fn watch_assignments(
        &self,
        _host_id: &str,
        revision: i64,
    ) -> Result<BoxStream<'static, ()>> {
        // Any change to desired state that shapes an assignment may concern this host (instances,
        // and the network topology: a security-group rule must be in effect within a second); the
        // agent re-reads its snapshot, coalescing bursts.
        let from = if revision > 0 { revision + 1 } else { 0 };
        let mut streams = Vec::with_capacity(ASSIGNMENT_PREFIXES.len());
        for prefix in ASSIGNMENT_PREFIXES {
            let s = self.app.kv().watch(prefix, from).await.map_err(store_err)?;
            streams.push(s.map(|_| ()).boxed());
        }
        Ok(futures::stream::select_all(streams).boxed())
    }
    async fn report_status(&self, instance_id: &str, status: InstanceStatus) -> Result<()> {
        instance::report_status(&self.app, instance_id, status).await
    }
    async fn report_migration(
        &self,
        instance_id: &str,
        host_id: &str,
        report: kumo_types::MigrationReport,
    ) -> Result<()> {
        crate::app::migration::report(&self.app, instance_id, host_id, report).await
    }
    async fn relay_requests(&self, host_id: &str) -> Result<Vec<kumo_types::RelayRequest>> {
        crate::app::relay::pending(&self.app, host_id).await
    }
    async fn relay_respond(
        &self,
        host_id: &str,
        request_id: &str,
        response: kumo_types::RelayResponse,
    ) -> Result<()> {
        crate::app::relay::respond(&self.app, host_id, request_id, response).await
    }
    async fn instance_removed(&self, instance_id: &str) -> Result<()> {
        instance::finalize_delete(&self.app, instance_id).await
    }
    async fn report_volume_status(&self, volume_id: &str, status: VolumeStatus) -> Result<()> {
        volume::report_status(&self.app, volume_id, status).await
    }
    async fn report_pool_status(
        &self,
        pool: &str,
        host_id: &str,
        status: kumo_types::PoolHostStatus,
    ) -> Result<()> {
        crate::app::pool::report(&self.app, pool, host_id, status).await
    }
    async fn console_input(
        &self,
        host_id: &str,
        console: &kumo_types::ConsoleRelay,
    ) -> Result<kumo_agent::control::ByteStream> {
        crate::app::console::input_stream(&self.app, host_id, &console.session, &console.server)
            .await
    }
    async fn console_output(
        &self,
        host_id: &str,
        console: &kumo_types::ConsoleRelay,
        output: kumo_agent::control::ByteStream,
    ) -> Result<()> {
        crate::app::console::feed_output(
            &self.app,
            host_id,
            &console.session,
            &console.server,
            output,
        )
        .await
    }
    async fn image_exists(&self, image_id: &str) -> Result<bool> {
        Ok(
            get_json::<kumo_types::Image>(self.app.kv(), &keys::image(image_id))
                .await?
                .is_some(),
        )
    }
    fn shares_image_store(&self) -> bool {
        true
    }
    async fn volume_removed(&self, volume_id: &str) -> Result<()> {
        volume::finalize_delete(&self.app, volume_id).await
    }
    async fn report_snapshot_status(
        &self,
        snapshot_id: &str,
        status: kumo_types::SnapshotStatus,
    ) -> Result<()> {
        snapshot::report_status(&self.app, snapshot_id, status).await
    }
    async fn snapshot_removed(&self, snapshot_id: &str) -> Result<()> {
        snapshot::finalize_delete(&self.app, snapshot_id).await
    }
    async fn event(&self, resource: &str, kind: &str, message: &str) -> Result<()> {
        event::record(&self.app, resource, kind, message).await
    }
}
