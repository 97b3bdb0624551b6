//! The in-process implementation of the agent's [`ControlPlane`]: in single-host mode the agent runs
//! inside `kumo server` and calls the app layer directly. A remote implementation (internal HTTP API,
//! mTLS) replaces this in multi-host clusters; the agent's logic does not change.

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use kumo_agent::control::ControlPlane;
use kumo_types::{AssignmentSnapshot, Host, HostInventory, InstanceStatus, Result};

use crate::app::{App, event, host, instance};
use crate::storeutil::{keys, store_err};

pub struct InProcess {
    pub app: App,
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
        // Any change to desired state may concern this host; the agent re-reads its snapshot.
        let from = if revision > 0 { revision + 1 } else { 0 };
        let stream = self
            .app
            .kv()
            .watch(keys::INSTANCES, from)
            .await
            .map_err(store_err)?;
        Ok(stream.map(|_| ()).boxed())
    }
    async fn report_status(&self, instance_id: &str, status: InstanceStatus) -> Result<()> {
        instance::report_status(&self.app, instance_id, status).await
    }
    async fn instance_removed(&self, instance_id: &str) -> Result<()> {
        instance::finalize_delete(&self.app, instance_id).await
    }
    async fn event(&self, resource: &str, kind: &str, message: &str) -> Result<()> {
        event::record(&self.app, resource, kind, message).await
    }
}
