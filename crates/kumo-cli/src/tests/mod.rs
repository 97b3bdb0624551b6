//! Unit tests: argument parsing, config precedence, rendering, exit codes, wait/log/console decisions,
//! and the raw-terminal guard on a real pseudo-terminal.

use std::path::PathBuf;

use clap::Parser;
use kumo_types::{ErrorBody, Image, ImageKind, InstanceState, InstanceView, RestartPolicy};

use crate::cmd::image::{self, Existing, ImageCmd};
use crate::cmd::instance::{self, InstanceCmd, LogStep};
use crate::cmd::misc::{self, EventsArgs};
use crate::config::{self, Sources};
use crate::wait::{Target, Verdict, verdict};
use crate::{CliError, Command, GlobalArgs, client, console, error, render, terminal};

#[derive(Debug, Parser)]
#[command(name = "kumo")]
pub(super) struct Cli {
    #[command(flatten)]
    pub(super) global: GlobalArgs,
    #[command(subcommand)]
    pub(super) cmd: Command,
}

pub(super) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("kumo").chain(args.iter().copied()))
}

pub(super) fn view(state: InstanceState, msg: Option<&str>) -> InstanceView {
    InstanceView {
        id: "i-0123".into(),
        name: "web".into(),
        project: "default".into(),
        state,
        desired_state: kumo_types::DesiredState::Running,
        status_message: msg.map(str::to_string),
        host: Some("host-a".into()),
        ipv4: Some("198.18.0.10".into()),
        mac: Some("52:54:00:00:00:0a".into()),
        image_id: "ami-1".into(),
        instance_type: "nano".into(),
        vcpus: 1,
        memory_mib: 256,
        root_disk_gib: 1,
        boot_volume_id: None,
        key_name: None,
        restart_policy: RestartPolicy::OnFailure,
        nics: vec![],
        accel: Some("tcg".into()),
        pid: Some(42),
        boot_count: 1,
        gpu_devices: vec![],
        placement_group: None,
        host_selector: Default::default(),
        placement: None,
        migration: None,
        last_migration: None,
        created_at: "2026-11-21T00:00:00.000Z".into(),
    }
}

pub(super) fn image_value(sha: &str) -> Image {
    Image {
        id: "ami-9".into(),
        name: "tiny".into(),
        project: "default".into(),
        kind: ImageKind::KernelInitrd,
        state: kumo_types::ImageState::Available,
        status_message: None,
        format: None,
        source_format: None,
        cmdline: Some("console=ttyS0".into()),
        size_bytes: 3 * 1024 * 1024,
        virtual_size_bytes: 0,
        sha256: sha.into(),
        source_url: None,
        progress: None,
        pool: "local".into(),
        visibility: Default::default(),
        created_at: "2026-11-21T00:00:00.000Z".into(),
    }
}

mod config_resolution;
mod decisions;
mod errors;
mod gpu;
mod net_parsing;
mod net_rendering;
mod net_syntax;
mod parsing;
mod placement;
mod raw_terminal;
mod rendering;
mod volume;
