//! Where things live under the data directory. Every path the agent (and, in single-host mode, the
//! server) uses is built here, so the layout is written down once:
//!
//! ```text
//! <data>/pool/images/<image-id>/{disk.qcow2|disk.raw|kernel|initrd}   the `local` dir pool
//! <data>/pool/instances/<instance-id>/root.qcow2                       root disks (overlays)
//! <data>/run/<instance-id>/{qemu.pid,qmp.sock,serial.sock,serial.log}  QEMU runtime files
//! <data>/net/<network-id>/{dnsmasq.pid,hosts,leases}                   per-network DHCP state
//! ```

use std::path::{Path, PathBuf};

pub fn pool_root(data: &Path) -> PathBuf {
    data.join("pool")
}
pub fn run_root(data: &Path) -> PathBuf {
    data.join("run")
}
pub fn run_dir(data: &Path, instance_id: &str) -> PathBuf {
    run_root(data).join(instance_id)
}
pub fn serial_log(data: &Path, instance_id: &str) -> PathBuf {
    run_dir(data, instance_id).join("serial.log")
}
pub fn serial_sock(data: &Path, instance_id: &str) -> PathBuf {
    run_dir(data, instance_id).join("serial.sock")
}
pub fn net_dir(data: &Path, network_id: &str) -> PathBuf {
    data.join("net").join(network_id)
}

/// Up to `max` bytes of a serial log from `offset`, and the log's size now (an absent log is empty).
/// What `kumo instance logs` reads, here or through a host's agent.
pub fn read_log_chunk(path: &Path, offset: u64, max: u64) -> std::io::Result<(Vec<u8>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let size = f.metadata()?.len();
    if offset >= size {
        return Ok((Vec::new(), size));
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok((buf, size))
}
