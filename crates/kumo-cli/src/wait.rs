//! `--wait`: poll an instance until it reaches a target, fails, or the timeout passes.
//!
//! [`verdict`] decides from one observation (pure); [`until`] is the polling loop.

use std::time::{Duration, Instant};

use kumo_types::{InstanceState, InstanceView};

use crate::CliError;
use crate::client::{Client, Json, seg};

/// How often `--wait` polls.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default `--timeout` (TCG boots are slow; image downloads are not involved).
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;

/// What the caller waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Running,
    Stopped,
    /// The instance no longer exists (404).
    Gone,
    /// Its migration ended (and, if it should run, it runs).
    Migrated,
}

impl Target {
    pub fn describe(self) -> &'static str {
        match self {
            Target::Running => "running",
            Target::Stopped => "stopped",
            Target::Gone => "deleted",
            Target::Migrated => "migrated",
        }
    }
}

/// The decision after one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// A terminal state that is not the target; the message explains it.
    Failed(String),
    KeepWaiting,
}

/// Decide from one observation (`None` = the instance does not exist).
///
/// `stale` is a failure state the instance was already in when the request was accepted (e.g. starting a
/// `crashed` instance): until the state changes once, that old failure is not taken as the answer.
pub fn verdict(
    target: Target,
    seen: Option<&InstanceView>,
    stale: Option<InstanceState>,
) -> Verdict {
    let Some(v) = seen else {
        return match target {
            Target::Gone => Verdict::Done,
            _ => Verdict::Failed("the instance no longer exists".into()),
        };
    };
    let why = |what: &str| {
        let msg = v.status_message.as_deref().unwrap_or("no status message");
        Verdict::Failed(format!("instance `{}` is {what}: {msg}", v.name))
    };
    if target == Target::Migrated {
        return match (&v.migration, &v.last_migration) {
            (Some(_), _) | (None, None) => Verdict::KeepWaiting,
            (None, Some(r)) if !r.succeeded => Verdict::Failed(format!(
                "migration {} of `{}` failed: {}",
                r.id,
                v.name,
                r.error.as_deref().unwrap_or("no reason given")
            )),
            (None, Some(_)) => match (v.desired_state, v.state) {
                (kumo_types::DesiredState::Running, InstanceState::Running) => Verdict::Done,
                (kumo_types::DesiredState::Stopped, _) => Verdict::Done,
                (_, InstanceState::Failed) => why("failed"),
                _ => Verdict::KeepWaiting,
            },
        };
    }
    match (target, v.state) {
        (Target::Gone | Target::Migrated, _) => Verdict::KeepWaiting,
        (Target::Running, InstanceState::Running) | (Target::Stopped, InstanceState::Stopped) => {
            Verdict::Done
        }
        (_, s) if Some(s) == stale => Verdict::KeepWaiting,
        (_, InstanceState::Failed) => why("failed"),
        (_, InstanceState::Crashed) => why("crashed"),
        (_, InstanceState::Deleting) => {
            Verdict::Failed(format!("instance `{}` is being deleted", v.name))
        }
        _ => Verdict::KeepWaiting,
    }
}

/// Poll `GET /v1/instances/{id}` until [`verdict`] is final. Returns the last view seen (None if gone).
/// `initial` is the state the API reported when it accepted the request.
pub async fn until(
    client: &Client,
    id: &str,
    target: Target,
    initial: Option<InstanceState>,
    timeout: Duration,
) -> Result<Option<Json<InstanceView>>, CliError> {
    let deadline = Instant::now() + timeout;
    let path = format!("instances/{}", seg(id));
    let mut stale = initial.filter(|s| matches!(s, InstanceState::Failed | InstanceState::Crashed));
    loop {
        let seen: Option<Json<InstanceView>> = client.get_opt(&path).await?;
        if let Some(j) = &seen
            && Some(j.value.state) != stale
        {
            stale = None;
        }
        match verdict(target, seen.as_ref().map(|j| &j.value), stale) {
            Verdict::Done => return Ok(seen),
            Verdict::Failed(msg) => return Err(CliError::usage(msg)),
            Verdict::KeepWaiting => {}
        }
        if Instant::now() >= deadline {
            let state = seen.map_or("unknown".to_string(), |j| {
                crate::render::wire(&j.value.state)
            });
            return Err(CliError::usage(format!(
                "timed out after {}s waiting for instance `{id}` to be {} (state: {state})",
                timeout.as_secs(),
                target.describe()
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
