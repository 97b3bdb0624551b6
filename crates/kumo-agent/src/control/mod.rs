//! The agent's only view of the control plane.
//!
//! In single-host mode `kumo server` implements this trait in-process; a remote implementation over the
//! internal HTTP API (mTLS) replaces it for multi-host clusters. The agent never touches the store.

use async_trait::async_trait;
use futures::stream::BoxStream;
use kumo_types::{AssignmentSnapshot, Host, HostInventory, InstanceStatus, Result, VolumeStatus};

/// Image files come from the control plane ([`crate::imagecache::FetchFile`]: hosts other than the
/// control plane's fetch images on first use).
#[async_trait]
pub trait ControlPlane: crate::imagecache::FetchFile + Send + Sync + 'static {
    /// Register (or re-register) this host; returns the host record (its ID is stable per hostname).
    async fn register_host(&self, inventory: HostInventory) -> Result<Host>;
    /// Liveness signal; called every few seconds.
    async fn heartbeat(&self, host_id: &str) -> Result<()>;
    /// Everything assigned to the host now, with the store revision it was read at.
    async fn assignments(&self, host_id: &str) -> Result<AssignmentSnapshot>;
    /// A stream that yields `()` whenever something relevant to the host may have changed after
    /// `revision`. The agent then re-reads [`ControlPlane::assignments`] (level-triggered).
    async fn watch_assignments(
        &self,
        host_id: &str,
        revision: i64,
    ) -> Result<BoxStream<'static, ()>>;
    /// Record the observed status of an instance.
    async fn report_status(&self, instance_id: &str, status: InstanceStatus) -> Result<()>;
    /// Report on a migration of `instance_id` this host (`host_id`) takes part in.
    async fn report_migration(
        &self,
        instance_id: &str,
        host_id: &str,
        report: kumo_types::MigrationReport,
    ) -> Result<()>;
    /// The agent has torn down a deleting instance completely; the control plane may forget it.
    async fn instance_removed(&self, instance_id: &str) -> Result<()>;
    /// Record the observed status of a volume whose file lives on this host.
    async fn report_volume_status(&self, volume_id: &str, status: VolumeStatus) -> Result<()>;
    /// The agent removed a deleting volume's file; the control plane may forget the volume.
    async fn volume_removed(&self, volume_id: &str) -> Result<()>;
    /// Record the observed status of a snapshot of a volume on this host.
    async fn report_snapshot_status(
        &self,
        snapshot_id: &str,
        status: kumo_types::SnapshotStatus,
    ) -> Result<()>;
    /// The agent removed a deleting snapshot from its volume's file.
    async fn snapshot_removed(&self, snapshot_id: &str) -> Result<()>;
    /// Record what this host sees of storage pool `pool` (capacity, or why it cannot use it).
    async fn report_pool_status(
        &self,
        pool: &str,
        host_id: &str,
        status: kumo_types::PoolHostStatus,
    ) -> Result<()>;
    /// Requests for what only this host has (serial logs); waits a while for one when there are
    /// none (long-poll).
    async fn relay_requests(&self, host_id: &str) -> Result<Vec<kumo_types::RelayRequest>>;
    /// Answer a relayed request.
    async fn relay_respond(
        &self,
        host_id: &str,
        request_id: &str,
        response: kumo_types::RelayResponse,
    ) -> Result<()>;
    /// What the user of console session `console` types, streamed until the session ends.
    async fn console_input(
        &self,
        host_id: &str,
        console: &kumo_types::ConsoleRelay,
    ) -> Result<ByteStream>;
    /// Stream what the guest prints to console session `console`; returns when `output` ends or
    /// the session does.
    async fn console_output(
        &self,
        host_id: &str,
        console: &kumo_types::ConsoleRelay,
        output: ByteStream,
    ) -> Result<()>;
    /// Append to the event log.
    async fn event(&self, resource: &str, kind: &str, message: &str) -> Result<()>;
    /// Whether image `image_id` still exists (hosts drop their cached copies of deleted images).
    async fn image_exists(&self, image_id: &str) -> Result<bool>;
    /// This host's pool is the control plane's own image store (the server's in-process agent):
    /// the server, not the agent, removes image files from it.
    fn shares_image_store(&self) -> bool {
        false
    }
}

/// Bytes as HTTP bodies stream them (console sessions).
pub type ByteStream = futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// What arrives on `rx`, as a [`ByteStream`] that ends when every sender is gone.
pub fn byte_stream(mut rx: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> ByteStream {
    use futures::StreamExt;
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok))).boxed()
}

pub mod http;

/// Body of the internal API's event route.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EventBody {
    pub resource: String,
    pub kind: String,
    pub message: String,
}

/// Answer of the internal API's watch long-poll.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WatchAnswer {
    pub changed: bool,
}
