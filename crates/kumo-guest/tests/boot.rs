//! Boots the real tiny guest on QEMU (TCG) inside a private network namespace: bridge + tap,
//! dnsmasq for DHCP, an EC2-style metadata responder on 169.254.169.254 (IMDSv2 token enforced),
//! then checks the console markers, the user-data run, the guest's HTTP responder and a clean ACPI
//! power-off through QMP `system_powerdown`.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kumo_testutil::{PidGuard, enter_private_netns, require, run};

const INSTANCE_ID: &str = "i-test0123456789abc";
const MAC: &str = "52:54:00:12:34:56";
const GUEST_IP: &str = "198.18.0.23";
const TOKEN: &str = "kumo-test-token-1";
const USER_DATA: &str = "#!/bin/sh\necho USERDATA-RAN-$((6*7))\necho HOST=$(hostname)\n";

/// Answer one metadata request. IMDSv2: a token from `PUT /latest/api/token`, required on every GET.
fn metadata_response(method: &str, path: &str, headers: &[(String, String)]) -> (u16, String) {
    let header = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    if method == "PUT" && path == "/latest/api/token" {
        return match header("X-aws-ec2-metadata-token-ttl-seconds") {
            Some(_) => (200, TOKEN.to_string()),
            None => (400, String::new()),
        };
    }
    if method != "GET" {
        return (405, String::new());
    }
    if header("X-aws-ec2-metadata-token") != Some(TOKEN) {
        return (401, String::new());
    }
    match path {
        "/latest/meta-data/instance-id" => (200, INSTANCE_ID.to_string()),
        "/latest/meta-data/hostname" => (200, "tiny-test".to_string()),
        "/latest/meta-data/local-ipv4" => (200, GUEST_IP.to_string()),
        "/latest/user-data" => (200, USER_DATA.to_string()),
        _ => (404, String::new()),
    }
}

async fn serve_metadata(listener: tokio::net::TcpListener, log: Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let log = log.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let text = String::from_utf8_lossy(&buf).into_owned();
            let mut lines = text.split("\r\n");
            let mut first = lines.next().unwrap_or_default().split(' ');
            let (method, path) = (
                first.next().unwrap_or_default(),
                first.next().unwrap_or_default(),
            );
            let headers: Vec<(String, String)> = lines
                .take_while(|l| !l.is_empty())
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            let (code, body) = metadata_response(method, path, &headers);
            log.lock().unwrap().push(format!("{method} {path} {code}"));
            let resp = format!(
                "HTTP/1.0 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nServer: kumo-test\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

fn setup_network() {
    run("ip", &["link", "add", "br0", "type", "bridge"]);
    run("ip", &["addr", "add", "198.18.0.1/24", "dev", "br0"]);
    run("ip", &["addr", "add", "169.254.169.254/32", "dev", "br0"]);
    run("ip", &["link", "set", "br0", "up"]);
    run("ip", &["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    run("ip", &["link", "set", "tap0", "master", "br0"]);
    run("ip", &["link", "set", "tap0", "up"]);
}

fn start_dnsmasq(dir: &Path, guard: &mut PidGuard) {
    let pidfile = dir.join("dnsmasq.pid");
    let args = [
        "--port=0".to_string(),
        "--bind-interfaces".into(),
        "--interface=br0".into(),
        "--except-interface=lo".into(),
        "--dhcp-range=198.18.0.10,198.18.0.250,255.255.255.0".into(),
        format!("--dhcp-host={MAC},{GUEST_IP}"),
        "--no-resolv".into(),
        "--no-hosts".into(),
        format!("--pid-file={}", pidfile.display()),
        format!("--dhcp-leasefile={}", dir.join("leases").display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("dnsmasq", &args);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    guard.add(pid);
}

fn start_qemu(
    guest: &kumo_guest::TinyGuest,
    dir: &Path,
    extra: &[&str],
    guard: &mut PidGuard,
) -> Child {
    let serial = format!("file:{}", dir.join("console.log").display());
    let qmp = format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display());
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "256",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-serial", &serial, "-qmp", &qmp])
        .arg("-kernel")
        .arg(&guest.kernel)
        .arg("-initrd")
        .arg(&guest.initrd)
        .args(["-append", &guest.cmdline])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qemu-system-x86_64");
    guard.add(i32::try_from(child.id()).unwrap());
    child
}

fn wait_for_console(log: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} on the console within {timeout:?}; console:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One QMP command over a fresh connection; returns the reply line.
fn qmp(sock: &Path, command: &str) -> String {
    let stream = UnixStream::connect(sock).expect("connect to QMP socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("QMP"), "unexpected QMP greeting {line}");
    for cmd in ["{\"execute\":\"qmp_capabilities\"}", command] {
        writeln!(w, "{cmd}").unwrap();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            // Skip asynchronous events.
            if !line.contains("\"event\"") {
                break;
            }
        }
        assert!(line.contains("\"return\""), "QMP {cmd} failed: {line}");
    }
    line
}

fn http_get(addr: &str) -> String {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to guest HTTP {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /instance-id HTTP/1.0\r\nHost: guest\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn tiny_guest_boots_reads_metadata_runs_user_data_and_powers_off() {
    enter_private_netns();
    require("qemu-system-x86_64", "qemu-system-x86");
    require("dnsmasq", "dnsmasq-base");
    require("ip", "iproute2");

    let out = tempfile::tempdir().unwrap();
    let guest = common::build(out.path());
    let dir = tempfile::tempdir().unwrap();
    let mut guard = PidGuard::new();
    setup_network();
    start_dnsmasq(dir.path(), &mut guard);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("169.254.169.254:80"))
        .unwrap();
    rt.spawn(serve_metadata(listener, requests.clone()));

    let started = Instant::now();
    let nic = format!("virtio-net-pci,netdev=n0,mac={MAC}");
    let extra = [
        "-netdev",
        "tap,id=n0,ifname=tap0,script=no,downscript=no",
        "-device",
        &nic,
    ];
    let mut qemu = start_qemu(&guest, dir.path(), &extra, &mut guard);
    let console = dir.path().join("console.log");
    let ready = format!("KUMO-READY instance-id={INSTANCE_ID} ip={GUEST_IP}");
    let text = wait_for_console(&console, &ready, Duration::from_secs(60));
    eprintln!("KUMO-READY after {:?}", started.elapsed());

    assert!(
        text.contains("USERDATA-RAN-42"),
        "user-data did not run; console:\n{text}"
    );
    assert!(text.contains("KUMO-USERDATA-EXIT=0"), "console:\n{text}");
    assert!(
        !text.contains("KUMO-ERROR"),
        "guest reported errors; console:\n{text}"
    );
    assert_eq!(text.matches("KUMO-READY").count(), 1, "console:\n{text}");
    let reqs = requests.lock().unwrap().clone();
    assert_eq!(
        reqs.first().map(String::as_str),
        Some("PUT /latest/api/token 200"),
        "{reqs:?}"
    );
    assert!(
        reqs.contains(&"GET /latest/user-data 200".to_string()),
        "{reqs:?}"
    );
    assert!(
        reqs.iter().all(|r| r.ends_with(" 200")),
        "requests without a valid token: {reqs:?}"
    );

    let page = http_get(&format!("{GUEST_IP}:80"));
    assert!(
        page.starts_with("HTTP/1.") && page.contains(INSTANCE_ID),
        "guest HTTP answered {page:?}"
    );

    // ACPI power button: the guest must power itself off and QEMU exit on its own.
    qmp(
        &dir.path().join("qmp.sock"),
        "{\"execute\":\"system_powerdown\"}",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = qemu.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(&console).unwrap_or_default();
            panic!("QEMU still running 30 s after system_powerdown; console:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = qemu.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "QEMU exited with {status}: {stderr}");
    let text = std::fs::read_to_string(&console).unwrap();
    assert!(
        text.contains("KUMO-POWEROFF"),
        "power-off did not go through acpid; console:\n{text}"
    );
    drop(guard); // kills dnsmasq (and QEMU, already gone) by PID
}

/// No NIC at all: the guest reports the failure, falls back to a NoCloud `cidata` ISO on a virtio
/// disk for its identity and user-data, and still reaches KUMO-READY with ip=none.
#[test]
fn tiny_guest_without_network_uses_nocloud_seed() {
    enter_private_netns();
    require("qemu-system-x86_64", "qemu-system-x86");
    require("genisoimage", "genisoimage");

    let out = tempfile::tempdir().unwrap();
    let guest = common::build(out.path());
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    std::fs::create_dir(&seed).unwrap();
    std::fs::write(
        seed.join("meta-data"),
        "instance-id: i-nocloud42\nlocal-hostname: seedy\n",
    )
    .unwrap();
    std::fs::write(
        seed.join("user-data"),
        "#!/bin/sh\necho USERDATA-RAN-$((6*7)) on $(hostname)\n",
    )
    .unwrap();
    let iso = dir.path().join("seed.iso");
    let iso_s = iso.to_str().unwrap();
    run(
        "genisoimage",
        &[
            "-quiet",
            "-o",
            iso_s,
            "-V",
            "cidata",
            "-J",
            "-r",
            seed.to_str().unwrap(),
        ],
    );

    let mut guard = PidGuard::new();
    let drive = format!("file={iso_s},if=none,id=seed,format=raw,readonly=on");
    let extra = ["-drive", &drive, "-device", "virtio-blk-pci,drive=seed"];
    let mut qemu = start_qemu(&guest, dir.path(), &extra, &mut guard);
    let console = dir.path().join("console.log");
    let text = wait_for_console(
        &console,
        "KUMO-READY instance-id=i-nocloud42 ip=none",
        Duration::from_secs(60),
    );
    assert!(text.contains("KUMO-ERROR no eth0"), "console:\n{text}");
    assert!(
        text.contains("USERDATA-RAN-42 on seedy"),
        "console:\n{text}"
    );
    assert!(text.contains("KUMO-USERDATA-EXIT=0"), "console:\n{text}");
    let _ = qemu.kill();
    let _ = qemu.wait();
}

/// DHCP works but nothing answers on 169.254.169.254: the guest says so and still reaches
/// KUMO-READY with its address and an unknown instance id.
#[test]
fn tiny_guest_without_metadata_still_gets_ready() {
    enter_private_netns();
    require("qemu-system-x86_64", "qemu-system-x86");
    require("dnsmasq", "dnsmasq-base");
    require("ip", "iproute2");

    let out = tempfile::tempdir().unwrap();
    let guest = common::build(out.path());
    let dir = tempfile::tempdir().unwrap();
    let mut guard = PidGuard::new();
    setup_network();
    start_dnsmasq(dir.path(), &mut guard);

    let nic = format!("virtio-net-pci,netdev=n0,mac={MAC}");
    let extra = [
        "-netdev",
        "tap,id=n0,ifname=tap0,script=no,downscript=no",
        "-device",
        &nic,
    ];
    let mut qemu = start_qemu(&guest, dir.path(), &extra, &mut guard);
    let console = dir.path().join("console.log");
    let ready = format!("KUMO-READY instance-id=unknown ip={GUEST_IP}");
    let text = wait_for_console(&console, &ready, Duration::from_secs(90));
    assert!(
        text.contains("KUMO-ERROR metadata 169.254.169.254"),
        "console:\n{text}"
    );
    assert!(
        !text.contains("KUMO-USERDATA-EXIT"),
        "no user-data to run; console:\n{text}"
    );
    let _ = qemu.kill();
    let _ = qemu.wait();
}
