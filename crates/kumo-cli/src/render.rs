//! Output: tables for humans (comfy-table), the API's JSON verbatim with `--json`.
//!
//! The `*_table` / `*_detail` functions are pure (value in, table out) and unit-tested; [`Output`] only
//! chooses between them and the raw JSON and writes to stdout. Network resources other than networks
//! are in [`net`], volumes in [`storage`].

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use kumo_types::{Event, Host, Image, InstanceType, InstanceView, KeyPair, Network};
use serde::Serialize;

use crate::client::{Json, List};

pub mod cluster;
pub mod net;
pub mod placement;
pub mod storage;

/// Where command results go.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Print one resource: its JSON verbatim, or a key/value table.
    pub fn one<T>(&self, v: &Json<T>, detail: impl Fn(&T) -> Table) {
        if self.json {
            println!("{}", v.raw.trim_end());
        } else {
            println!("{}", detail(&v.value));
        }
    }

    /// Print one resource: its JSON verbatim, or several tables separated by a blank line.
    pub fn one_tables<T>(&self, v: &Json<T>, tables: impl Fn(&T) -> Vec<Table>) {
        if self.json {
            println!("{}", v.raw.trim_end());
        } else {
            let parts: Vec<String> = tables(&v.value).iter().map(Table::to_string).collect();
            println!("{}", parts.join("\n\n"));
        }
    }

    /// Print a list: `{"items": [...]}` verbatim, or a table.
    pub fn list<T>(&self, l: &List<T>, table: impl Fn(&[T]) -> Table) {
        if self.json {
            println!("{}", l.raw());
        } else {
            println!("{}", table(&l.items));
        }
    }

    /// A human-only progress or status line (stderr, so stdout stays clean for `--json`).
    pub fn note(&self, msg: impl AsRef<str>) {
        eprintln!("{}", msg.as_ref());
    }
}

/// The wire name of a unit enum (`running`, `kernel_initrd`, `on-failure`).
pub fn wire<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

fn detail(rows: Vec<(&str, String)>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    t
}

/// Human-readable byte size (binary units).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// An image's state for tables: `available`, `error`, or `importing 45%`.
pub fn image_state(i: &Image) -> String {
    match (i.state, i.progress.and_then(|p| p.percent())) {
        (kumo_types::ImageState::Importing, Some(p)) => format!("importing {p}%"),
        (s, _) => wire(&s),
    }
}

pub fn images_table(items: &[Image]) -> Table {
    let mut t = table(&["NAME", "ID", "KIND", "FORMAT", "STATE", "SIZE", "CREATED"]);
    for i in items {
        t.add_row(vec![
            i.name.clone(),
            i.id.clone(),
            wire(&i.kind),
            i.format.map_or("-".into(), |f| f.as_str().to_string()),
            image_state(i),
            bytes(i.size_bytes),
            i.created_at.clone(),
        ]);
    }
    t
}

pub fn image_detail(i: &Image) -> Table {
    let mut rows = vec![
        ("name", i.name.clone()),
        ("id", i.id.clone()),
        ("project", i.project.clone()),
        ("visibility", wire(&i.visibility)),
        ("kind", wire(&i.kind)),
        ("state", wire(&i.state)),
    ];
    if let Some(m) = &i.status_message {
        rows.push(("status message", m.clone()));
    }
    rows.push((
        "format",
        i.format.map_or("-".into(), |f| f.as_str().to_string()),
    ));
    if let Some(f) = i.source_format {
        rows.push(("converted from", f.as_str().to_string()));
    }
    if let Some(u) = &i.source_url {
        rows.push(("source url", u.clone()));
    }
    if let Some(p) = i.progress {
        let total = p.bytes_total.map_or("unknown".to_string(), bytes);
        let pc = p
            .percent()
            .map(|pc| format!(" ({pc}%)"))
            .unwrap_or_default();
        rows.push((
            "downloaded",
            format!("{} of {total}{pc}", bytes(p.bytes_done)),
        ));
    }
    rows.extend([
        ("cmdline", opt(&i.cmdline)),
        ("size", bytes(i.size_bytes)),
        ("virtual size", bytes(i.virtual_size_bytes)),
        ("sha256", i.sha256.clone()),
        ("pool", i.pool.clone()),
        ("created", i.created_at.clone()),
    ]);
    detail(rows)
}

pub fn instances_table(items: &[InstanceView]) -> Table {
    let mut t = table(&["NAME", "ID", "STATE", "TYPE", "IPV4", "HOST", "CREATED"]);
    for i in items {
        t.add_row(vec![
            i.name.clone(),
            i.id.clone(),
            wire(&i.state),
            i.instance_type.clone(),
            opt(&i.ipv4),
            opt(&i.host),
            i.created_at.clone(),
        ]);
    }
    t
}

pub fn instance_detail(i: &InstanceView) -> Table {
    let nics: Vec<String> = i
        .nics
        .iter()
        .enumerate()
        .map(|(k, n)| nic_line(k, n))
        .collect();
    let mut rows = vec![
        ("name", i.name.clone()),
        ("id", i.id.clone()),
        ("project", i.project.clone()),
        ("state", wire(&i.state)),
        ("desired state", wire(&i.desired_state)),
        ("status message", opt(&i.status_message)),
        ("host", opt(&i.host)),
        ("ipv4", opt(&i.ipv4)),
        ("mac", opt(&i.mac)),
        ("image", i.image_id.clone()),
        (
            "type",
            format!(
                "{} ({} vCPU, {} MiB, {} GiB root)",
                i.instance_type, i.vcpus, i.memory_mib, i.root_disk_gib
            ),
        ),
        ("key pair", opt(&i.key_name)),
        ("restart policy", wire(&i.restart_policy)),
        (
            "nics",
            if nics.is_empty() {
                "-".into()
            } else {
                nics.join("\n")
            },
        ),
        ("accel", opt(&i.accel)),
        ("pid", i.pid.map_or("-".into(), |p| p.to_string())),
        ("boot count", i.boot_count.to_string()),
    ];
    rows.extend(placement::instance_rows(i));
    rows.push(("created", i.created_at.clone()));
    detail(rows)
}

/// One NIC of `instance show`: `nic0 198.18.0.10 52:54:00:… port port-… network net-… subnet sub-…`.
pub fn nic_line(index: usize, n: &kumo_types::Nic) -> String {
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    format!(
        "nic{index} {} {} port {} network {} subnet {}",
        n.ipv4,
        n.mac,
        dash(&n.port_id),
        n.network_id,
        dash(&n.subnet_id)
    )
}

pub fn instance_types_table(items: &[InstanceType]) -> Table {
    let mut t = table(&[
        "NAME",
        "VCPUS",
        "MEMORY (MiB)",
        "ROOT DISK (GiB)",
        "GPUS",
        "BUILTIN",
    ]);
    for i in items {
        t.add_row(vec![
            i.name.clone(),
            i.vcpus.to_string(),
            i.memory_mib.to_string(),
            i.root_disk_gib.to_string(),
            i.gpus
                .as_ref()
                .map_or("-".into(), |g| format!("{}x {}", g.count, g.model)),
            if i.builtin { "yes".into() } else { "no".into() },
        ]);
    }
    t
}

pub fn instance_type_detail(i: &InstanceType) -> Table {
    instance_types_table(std::slice::from_ref(i))
}

pub fn key_pairs_table(items: &[KeyPair]) -> Table {
    let mut t = table(&["NAME", "ID", "FINGERPRINT", "CREATED"]);
    for k in items {
        t.add_row(vec![
            k.name.clone(),
            k.id.clone(),
            k.fingerprint.clone(),
            k.created_at.clone(),
        ]);
    }
    t
}

pub fn key_pair_detail(k: &KeyPair) -> Table {
    detail(vec![
        ("name", k.name.clone()),
        ("id", k.id.clone()),
        ("project", k.project.clone()),
        ("fingerprint", k.fingerprint.clone()),
        ("public key", k.public_key.clone()),
        ("created", k.created_at.clone()),
    ])
}

pub fn hosts_table(items: &[Host]) -> Table {
    let mut t = table(&[
        "NAME",
        "ID",
        "STATE",
        "ACCEL",
        "CPUS",
        "MEMORY",
        "DISK FREE",
        "LAST HEARTBEAT",
    ]);
    for h in items {
        t.add_row(vec![
            h.name.clone(),
            h.id.clone(),
            wire(&h.state),
            h.accel.clone(),
            h.inventory.cpus.to_string(),
            bytes(h.inventory.memory_mib.saturating_mul(1024 * 1024)),
            bytes(h.inventory.disk_free_bytes),
            h.last_heartbeat.clone(),
        ]);
    }
    t
}

pub fn host_detail(h: &Host) -> Table {
    let inv = &h.inventory;
    detail(vec![
        ("name", h.name.clone()),
        ("id", h.id.clone()),
        ("state", wire(&h.state)),
        ("labels", placement::labels(&h.labels)),
        (
            "fencing",
            h.fencing
                .as_ref()
                .map(|f| format!("Redfish {}", f.redfish_url))
                .unwrap_or_else(|| "self-fencing only (no BMC)".into()),
        ),
        ("accel", h.accel.clone()),
        ("hostname", inv.hostname.clone()),
        ("cpus", inv.cpus.to_string()),
        ("memory", bytes(inv.memory_mib.saturating_mul(1024 * 1024))),
        (
            "disk",
            format!(
                "{} free of {}",
                bytes(inv.disk_free_bytes),
                bytes(inv.disk_total_bytes)
            ),
        ),
        ("qemu", inv.qemu_version.clone()),
        ("kernel", inv.kernel.clone()),
        (
            "kvm usable",
            if inv.kvm_usable {
                "yes".into()
            } else {
                "no".into()
            },
        ),
        ("kvm probe", inv.kvm_probe.clone()),
        ("pci devices", pci_devices(&inv.pci_devices)),
        ("registered", h.registered_at.clone()),
        ("last heartbeat", h.last_heartbeat.clone()),
    ])
}

/// A host's passable PCI devices, one a line: `0000:65:00.0 10de:2236 gpu iommu group 30 driver
/// nvidia` (`no iommu group`: cannot be passed through until the IOMMU is on).
pub fn pci_devices(devices: &[kumo_types::PciDevice]) -> String {
    if devices.is_empty() {
        return "-".into();
    }
    devices
        .iter()
        .map(|d| {
            format!(
                "{} {} {} {} driver {}",
                d.address,
                d.model,
                if d.gpu { "gpu" } else { d.class.as_str() },
                d.iommu_group
                    .map_or("no iommu group".into(), |g| format!("iommu group {g}")),
                d.driver.as_deref().unwrap_or("none"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn networks_table(items: &[Network]) -> Table {
    let mut t = table(&["NAME", "ID", "KIND", "BRIDGE", "NAT", "MTU"]);
    for n in items {
        t.add_row(vec![
            n.name.clone(),
            n.id.clone(),
            network_kind(n),
            n.bridge.clone(),
            if n.nat { "yes".into() } else { "no".into() },
            n.mtu.to_string(),
        ]);
    }
    t
}

fn network_kind(n: &Network) -> String {
    match n.kind {
        kumo_types::NetworkKind::Bridge => "bridge".into(),
        kumo_types::NetworkKind::Vlan => format!(
            "vlan {} on {}",
            n.vlan_id.map(|v| v.to_string()).unwrap_or_default(),
            n.physical_network.clone().unwrap_or_default()
        ),
        kumo_types::NetworkKind::Vxlan => {
            format!("vxlan {}", n.vni.map(|v| v.to_string()).unwrap_or_default())
        }
    }
}

pub fn network_detail(n: &Network) -> Table {
    detail(vec![
        ("name", n.name.clone()),
        ("id", n.id.clone()),
        ("project", n.project.clone()),
        ("kind", network_kind(n)),
        (
            "external",
            if n.external {
                "yes".into()
            } else {
                "no".into()
            },
        ),
        ("bridge", n.bridge.clone()),
        ("nat", if n.nat { "yes".into() } else { "no".into() }),
        ("mtu", n.mtu.to_string()),
        ("cidr", n.cidr.clone().unwrap_or_else(|| "any".into())),
        ("created", n.created_at.clone()),
    ])
}

pub fn events_table(items: &[Event]) -> Table {
    let mut t = table(&["TIME", "RESOURCE", "KIND", "MESSAGE"]);
    for e in items {
        t.add_row(vec![
            e.time.clone(),
            e.resource.clone(),
            e.kind.clone(),
            e.message.clone(),
        ]);
    }
    t
}
