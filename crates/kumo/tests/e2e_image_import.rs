//! Image imports from URLs, on a real server: files are served over HTTP from loopback inside the
//! test's network namespace by [`Web`], a small HTTP/1.1 server in this file that can also send a
//! file slowly (to watch `importing` and its progress) or without a length. Checked: sha256
//! verification (a mismatch keeps nothing and frees the name), progress, precise refusals (404,
//! connection refused, bad scheme), ISO detection and its refusal as an instance's or a volume's image,
//! vmdk conversion, cancelling by deleting, a restart failing an unfinished import, and delete
//! protection of images used by volumes and instances.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Cloud, tail};
use serde_json::{Value, json};

/// Piece size and pause of `/slow/…` answers: 64 KiB every 100 ms (0.64 MiB/s).
const SLOW_PIECE: usize = 64 << 10;
const SLOW_PAUSE: Duration = Duration::from_millis(100);

/// A tiny HTTP/1.1 file server on 127.0.0.1: `GET /<name>` sends the file with its length,
/// `/slow/<name>` sends it slowly, `/nolength/<name>` without `Content-Length` (the connection's end
/// ends it); anything else is 404. Every connection is closed after one answer.
struct Web {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Web {
    fn serve(dir: &Path) -> Web {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test web server");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, stop2) = (dir.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let dir = dir.clone();
                std::thread::spawn(move || answer(conn, &dir));
            }
        });
        Web {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut conn: TcpStream, dir: &Path) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (mode, name) = match path.trim_start_matches('/').split_once('/') {
        Some(("slow", n)) => ("slow", n.to_string()),
        Some(("nolength", n)) => ("nolength", n.to_string()),
        _ => ("plain", path.trim_start_matches('/').to_string()),
    };
    let file = dir.join(&name);
    let body = match (name.contains(".."), std::fs::read(&file)) {
        (false, Ok(b)) => b,
        _ => {
            let _ = conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
    };
    let length = if mode == "nolength" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n{length}Connection: close\r\n\r\n"
    );
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    if mode == "slow" {
        for piece in body.chunks(SLOW_PIECE) {
            if conn.write_all(piece).is_err() {
                return; // the importer went away (cancelled, or its server was killed)
            }
            std::thread::sleep(SLOW_PAUSE);
        }
    } else {
        let _ = conn.write_all(&body);
    }
}

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

fn qemu_img_create(fmt: &str, p: &Path, size: &str) {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", fmt])
        .arg(p)
        .arg(size)
        .output()
        .expect("qemu-img create");
    assert!(out.status.success(), "{out:?}");
}

fn post(c: &Cloud, path: &str, body: Value) -> (u16, Value) {
    c.http("POST", path, Some(&body.to_string()))
}

fn ok(c: &Cloud, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = c.http(method, path, body.map(|b| b.to_string()).as_deref());
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

/// Expect a refusal with this status naming `field`; returns the message.
fn refused(c: &Cloud, path: &str, body: Value, status: u16, field: &str) -> String {
    let (s, e) = post(c, path, body.clone());
    assert_eq!(
        (s, e["field"].as_str()),
        (status, Some(field)),
        "POST {path} {body}: {e}"
    );
    e["message"].as_str().unwrap_or_default().to_string()
}

/// Wait until the image leaves `importing`; returns it.
fn wait_image(c: &Cloud, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (s, v) = c.http("GET", &format!("/v1/images/{name}"), None);
        assert_eq!(s, 200, "image {name}: {v}");
        if v["state"] != "importing" {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "image {name} still importing: {v}\n{}",
            tail(&c.server_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Entries of the pool's images directory that belong to image `id` (its files and any leftovers).
fn image_files(c: &Cloud, id: &str) -> Vec<String> {
    let dir = c.data_dir().join("pool/images");
    std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(id))
                .collect()
        })
        .unwrap_or_default()
}

/// Wait until the image's files are all gone.
fn wait_no_files(c: &Cloud, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !image_files(c, id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "files of {id} left behind: {:?}",
            image_files(c, id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until the import has downloaded something (so it is mid-way).
fn wait_progress(c: &Cloud, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = c.http("GET", &format!("/v1/images/{name}"), None);
        if v["progress"]["bytes_done"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(v["state"], "importing", "{v}");
            return v;
        }
        assert!(Instant::now() < deadline, "no progress: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Files {
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

/// The files the web server offers: a qcow2 (4 MiB of data, so that the slow answer takes ~6 s), a
/// vmdk, an ISO made with genisoimage.
fn files() -> Files {
    kumo_testutil::require("genisoimage", "genisoimage");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let raw = dir.join("data.raw");
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&raw, &data).expect("write raw");
    let out = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(dir.join("disk.qcow2"))
        .output()
        .expect("qemu-img convert");
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("qemu-img")
        .args(["resize", "-q", "-f", "qcow2"])
        .arg(dir.join("disk.qcow2"))
        .arg("64M")
        .output()
        .expect("qemu-img resize");
    assert!(out.status.success(), "{out:?}");
    std::fs::remove_file(&raw).expect("rm raw");
    qemu_img_create("vmdk", &dir.join("disk.vmdk"), "32M");
    let cd = dir.join("cd");
    std::fs::create_dir_all(&cd).expect("mkdir");
    std::fs::write(cd.join("README.TXT"), "kumo test CD\n").expect("write");
    // Bootable (El Torito, no emulation): the boot sector that prints KUMO-CD-BOOT on COM1.
    let mut boot = common::boot_sector(b"KUMO-CD-BOOT");
    boot.resize(2048, 0);
    std::fs::write(cd.join("boot.img"), &boot).expect("write boot image");
    let out = Command::new("genisoimage")
        .args([
            "-quiet",
            "-V",
            "KUMOTEST",
            "-b",
            "boot.img",
            "-no-emul-boot",
        ])
        .args(["-boot-load-size", "4", "-o"])
        .arg(dir.join("cd.iso"))
        .arg(&cd)
        .output()
        .expect("genisoimage");
    assert!(out.status.success(), "{out:?}");
    Files { _dir: tmp, dir }
}

#[test]
fn url_imports_verify_report_progress_and_refuse_precisely() {
    let cloud = Cloud::start();
    let f = files();
    let web = Web::serve(&f.dir);
    let qcow2 = f.dir.join("disk.qcow2");
    let (qsha, qsize) = (
        sha256(&qcow2),
        std::fs::metadata(&qcow2).expect("size").len(),
    );

    // The CLI waits and shows progress on stderr; the image is available with the right sha256,
    // virtual size and a finished progress.
    let out = cloud.kumo(&[
        "--json",
        "image",
        "import",
        "--name",
        "deb",
        "--disk-url",
        &web.url("slow/disk.qcow2"),
        "--sha256",
        &qsha.to_uppercase(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stderr}\n{}",
        tail(&cloud.server_log(), 40)
    );
    assert!(stderr.contains("image `deb`: downloading: "), "{stderr}");
    let img: Value = serde_json::from_slice(&out.stdout).expect("image JSON");
    assert_eq!(
        (&img["state"], &img["kind"], &img["format"]),
        (&json!("available"), &json!("disk"), &json!("qcow2")),
        "{img}"
    );
    assert_eq!(img["sha256"], qsha.as_str(), "{img}");
    assert_eq!(img["virtual_size_bytes"], 64 << 20, "{img}");
    assert_eq!(img["size_bytes"], qsize, "{img}");
    assert_eq!(
        (
            &img["progress"]["bytes_done"],
            &img["progress"]["bytes_total"]
        ),
        (&json!(qsize), &json!(qsize)),
        "{img}"
    );
    assert_eq!(img["source_url"], web.url("slow/disk.qcow2"));
    let id = img["id"].as_str().expect("id").to_string();
    assert_eq!(image_files(&cloud, &id), vec![id.clone()], "only the image");
    let shown = cloud.ok(&["image", "list"]);
    assert!(shown.contains("available"), "{shown}");

    // A wrong sha256: accepted (the download must happen first), then `error` naming sha256, with no
    // files left; the same name is free for a new import, which replaces the failed one.
    let (s, bad) = post(
        &cloud,
        "/v1/images",
        json!({"name": "deb2", "url": web.url("disk.qcow2"), "sha256": "0".repeat(64)}),
    );
    assert_eq!((s, &bad["state"]), (202, &json!("importing")), "{bad}");
    let bad_id = bad["id"].as_str().expect("id").to_string();
    let failed = wait_image(&cloud, "deb2");
    assert_eq!(failed["state"], "error", "{failed}");
    let msg = failed["status_message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("`sha256`") && msg.contains(&qsha) && msg.contains(&"0".repeat(64)),
        "{msg}"
    );
    wait_no_files(&cloud, &bad_id);
    let out = cloud.kumo(&["image", "show", "deb2"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sha256"),
        "{out:?}"
    );
    // An image that failed to import cannot be used.
    let m = refused(
        &cloud,
        "/v1/volumes",
        json!({"name": "v0", "image": "deb2"}),
        409,
        "image",
    );
    assert!(m.contains("failed to import"), "{m}");
    let out = cloud.kumo(&[
        "image",
        "import",
        "--name",
        "deb2",
        "--disk-url",
        &web.url("nolength/disk.qcow2"),
        "--sha256",
        &qsha,
    ]);
    assert!(out.status.success(), "{out:?}");
    let again = wait_image(&cloud, "deb2");
    assert_eq!(again["state"], "available", "{again}");
    assert_ne!(
        again["id"],
        bad_id.as_str(),
        "a new image replaced the failed one"
    );
    assert_eq!(
        again["progress"]["bytes_total"], qsize,
        "a download without a length knows its total once done: {again}"
    );
    assert_eq!(
        cloud.http("GET", &format!("/v1/images/{bad_id}"), None).0,
        404
    );

    // The CLI fails (exit 1) with the server's message when the import fails.
    let out = cloud.kumo(&[
        "image",
        "import",
        "--name",
        "deb3",
        "--disk-url",
        &web.url("disk.qcow2"),
        "--format",
        "raw",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("import of image `deb3` failed") && stderr.contains("is qcow2, not raw"),
        "{stderr}"
    );

    // Refused before anything is recorded: a 404, nothing listening, a scheme other than http(s),
    // a malformed sha256.
    let m = refused(
        &cloud,
        "/v1/images",
        json!({"name": "gone", "url": web.url("missing.qcow2")}),
        422,
        "url",
    );
    assert!(m.contains("404 Not Found"), "{m}");
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let m = refused(
        &cloud,
        "/v1/images",
        json!({"name": "gone", "url": format!("http://{closed}/x.qcow2")}),
        422,
        "url",
    );
    assert!(m.contains("cannot download"), "{m}");
    // https is supported (rustls): a plain-HTTP server fails the TLS handshake, not the scheme check.
    let m = refused(
        &cloud,
        "/v1/images",
        json!({"name": "gone", "url": web.url("disk.qcow2").replace("http:", "https:")}),
        422,
        "url",
    );
    assert!(
        m.contains("cannot download") && !m.contains("scheme"),
        "{m}"
    );
    let m = refused(
        &cloud,
        "/v1/images",
        json!({"name": "gone", "url": "ftp://127.0.0.1/x.qcow2"}),
        422,
        "url",
    );
    assert!(
        m.contains("scheme `ftp` is not supported; use http or https"),
        "{m}"
    );
    refused(
        &cloud,
        "/v1/images",
        json!({"name": "gone", "url": web.url("disk.qcow2"), "sha256": "abc"}),
        422,
        "sha256",
    );
    refused(
        &cloud,
        "/v1/images",
        json!({"name": "gone", "kernel_url": web.url("disk.qcow2")}),
        422,
        "initrd_url",
    );
    assert_eq!(cloud.http("GET", "/v1/images/gone", None).0, 404);

    // vmdk is converted to qcow2.
    let (s, _) = post(
        &cloud,
        "/v1/images",
        json!({"name": "vm", "url": web.url("disk.vmdk")}),
    );
    assert_eq!(s, 202);
    let vm = wait_image(&cloud, "vm");
    assert_eq!(
        (&vm["state"], &vm["format"], &vm["source_format"]),
        (&json!("available"), &json!("qcow2"), &json!("vmdk")),
        "{vm}"
    );
    assert_eq!(vm["virtual_size_bytes"], 32 << 20);

    // An ISO is detected, stored unchanged, boots an instance from a CD-ROM (with a blank root disk),
    // and is refused as a volume's image.
    let iso = f.dir.join("cd.iso");
    post(
        &cloud,
        "/v1/images",
        json!({"name": "cd", "url": web.url("cd.iso")}),
    );
    let cd = wait_image(&cloud, "cd");
    assert_eq!(
        (&cd["state"], &cd["kind"], &cd["format"]),
        (&json!("available"), &json!("disk"), &json!("iso")),
        "{cd}"
    );
    assert_eq!(cd["sha256"], sha256(&iso).as_str());
    let stored = cloud
        .data_dir()
        .join("pool/images")
        .join(cd["id"].as_str().expect("id"))
        .join("disk.iso");
    assert_eq!(
        std::fs::read(&stored).expect("stored ISO"),
        std::fs::read(&iso).expect("ISO"),
        "stored unchanged"
    );
    ok(
        &cloud,
        "POST",
        "/v1/instances",
        Some(json!({"name": "installer", "image": "cd", "instance_type": "nano"})),
    );
    cloud.wait_state("installer", "running");
    cloud.wait_console("installer", "KUMO-CD-BOOT");
    cloud.ok(&["instance", "delete", "installer", "--wait"]);
    let m = refused(
        &cloud,
        "/v1/volumes",
        json!({"name": "v1", "image": "cd"}),
        422,
        "image",
    );
    assert!(m.contains("volumes cannot be made from ISO images"), "{m}");

    // An importing image cannot be used; deleting it cancels the import and removes its files.
    let (s, slow) = post(
        &cloud,
        "/v1/images",
        json!({"name": "slow", "url": web.url("slow/disk.qcow2")}),
    );
    assert_eq!(s, 202, "{slow}");
    let slow_id = slow["id"].as_str().expect("id").to_string();
    let seen = wait_progress(&cloud, "slow");
    assert_eq!(seen["progress"]["bytes_total"], qsize, "{seen}");
    let m = refused(
        &cloud,
        "/v1/instances",
        json!({"name": "inst", "image": "slow", "instance_type": "nano"}),
        409,
        "image",
    );
    assert!(m.contains("still importing"), "{m}");
    refused(
        &cloud,
        "/v1/volumes",
        json!({"name": "v2", "image": "slow"}),
        409,
        "image",
    );
    let (s, v) = cloud.http("DELETE", "/v1/images/slow", None);
    assert_eq!(s, 204, "{v}");
    assert_eq!(cloud.http("GET", "/v1/images/slow", None).0, 404);
    wait_no_files(&cloud, &slow_id);
    // It stays gone: the cancelled task does not write the record back.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        cloud.http("GET", &format!("/v1/images/{slow_id}"), None).0,
        404
    );
    let (_, events) = cloud.http("GET", &format!("/v1/events?resource={slow_id}"), None);
    assert!(events.to_string().contains("import cancelled"), "{events}");

    // An image used by a volume or an instance cannot be deleted (409 naming them).
    ok(
        &cloud,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "data", "image": "deb"})),
    );
    let (s, e) = cloud.http("DELETE", "/v1/images/deb", None);
    assert_eq!(s, 409, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("volume(s) data"),
        "{e}"
    );
    ok(
        &cloud,
        "POST",
        "/v1/instances",
        Some(json!({"name": "web", "image": "deb2", "instance_type": "nano", "start": false})),
    );
    let (s, e) = cloud.http("DELETE", "/v1/images/deb2", None);
    assert_eq!(s, 409, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("instance(s) web"),
        "{e}"
    );
    // An unused one can.
    let (s, e) = cloud.http("DELETE", "/v1/images/vm", None);
    assert_eq!(s, 204, "{e}");
}

#[test]
fn a_restart_fails_an_unfinished_import() {
    let mut cloud = Cloud::start();
    let f = files();
    let web = Web::serve(&f.dir);
    let (s, img) = post(
        &cloud,
        "/v1/images",
        json!({"name": "slow", "url": web.url("slow/disk.qcow2")}),
    );
    assert_eq!(s, 202, "{img}");
    let id = img["id"].as_str().expect("id").to_string();
    wait_progress(&cloud, "slow");
    assert!(
        image_files(&cloud, &id).contains(&format!("{id}.download")),
        "{:?}",
        image_files(&cloud, &id)
    );
    cloud.kill9();
    cloud.spawn_server();
    let after = ok(&cloud, "GET", "/v1/images/slow", None);
    assert_eq!(after["state"], "error", "{after}");
    assert!(
        after["status_message"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted by a server restart"),
        "{after}"
    );
    assert!(
        image_files(&cloud, &id).is_empty(),
        "{:?}",
        image_files(&cloud, &id)
    );
    // The same name imports again (replacing the failed image).
    let out = cloud.kumo(&[
        "image",
        "import",
        "--name",
        "slow",
        "--disk-url",
        &web.url("disk.qcow2"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        ok(&cloud, "GET", "/v1/images/slow", None)["state"],
        "available"
    );
}
