//! The metadata service over real sockets in a private netns: each source address sees only its own
//! instance, unknown sources learn nothing, and IMDSv2 tokens are bound to the address they were
//! issued to.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};

use kumo_agent::metadata::{self, InstanceMetadata, MetadataRegistry};
use kumo_agent::network::{self, BridgeSpec, METADATA_ADDR};
use kumo_testutil::{enter_private_netns, require, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const UNKNOWN: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);

struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 request from a socket bound to `src`.
async fn http(src: Ipv4Addr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((src, 0))).unwrap();
    let mut conn = sock
        .connect(SocketAddr::from((METADATA_ADDR, 80)))
        .await
        .unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "PUT" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

async fn get(src: Ipv4Addr, path: &str) -> Reply {
    http(src, "GET", path, &[]).await
}

async fn token(src: Ipv4Addr, ttl: &str) -> Reply {
    http(
        src,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", ttl)],
    )
    .await
}

fn instance(id: &str, ip: Ipv4Addr, user_data: &str) -> InstanceMetadata {
    let mut m = InstanceMetadata::new(id, format!("host-{id}"), ip);
    m.user_data = Some(user_data.into());
    m.public_keys = vec![("k".into(), format!("ssh-ed25519 AAAA {id}"))];
    m
}

#[test]
fn each_instance_sees_only_itself() {
    enter_private_netns();
    require("ip", "iproute2");
    network::ensure_bridge(&BridgeSpec {
        name: "kbrmd".into(),
        addresses: vec!["198.18.0.1/24".into()],
        mtu: 1500,
    })
    .unwrap();
    run(
        "ip",
        &[
            "link", "add", "kmd0", "type", "veth", "peer", "name", "kmd1",
        ],
    );
    run("ip", &["link", "set", "dev", "kmd1", "up"]);
    for ip in [A, B, UNKNOWN] {
        run("ip", &["addr", "add", &format!("{ip}/32"), "dev", "kmd0"]);
    }
    run("ip", &["link", "set", "dev", "kmd0", "up"]);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let registry = MetadataRegistry::new();
        registry.upsert(A, instance("i-0000000000000000a", A, "user-data-of-a"));
        let mut b = instance("i-0000000000000000b", B, "user-data-of-b");
        b.imdsv2_required = true;
        registry.upsert(B, b);
        let listener = tokio::net::TcpListener::bind((METADATA_ADDR, 80))
            .await
            .unwrap();
        let server = tokio::spawn(metadata::serve(listener, registry.clone()));

        // IMDSv1 for A: its own data only.
        let r = get(A, "/latest/meta-data/instance-id").await;
        assert_eq!((r.status, r.body.as_str()), (200, "i-0000000000000000a"));
        assert_eq!(get(A, "/latest/user-data").await.body, "user-data-of-a");
        assert_eq!(
            get(A, "/latest/meta-data/local-ipv4").await.body,
            "198.18.0.10"
        );
        assert_eq!(
            get(A, "/latest/meta-data/public-keys/0/openssh-key")
                .await
                .body,
            "ssh-ed25519 AAAA i-0000000000000000a"
        );
        assert_eq!(get(A, "/latest/meta-data/public-ipv4").await.status, 404);
        let doc = get(A, "/latest/dynamic/instance-identity/document").await;
        assert_eq!(doc.status, 200);
        let doc: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
        assert_eq!(doc["instanceId"], "i-0000000000000000a");

        // Unknown source: 404 everywhere, token included.
        for path in [
            "/latest/meta-data/instance-id",
            "/latest/user-data",
            "/latest/meta-data/",
            "/",
        ] {
            let r = get(UNKNOWN, path).await;
            assert_eq!(r.status, 404, "{path}");
            assert!(!r.body.contains("i-000"), "{path}: {}", r.body);
        }
        assert_eq!(token(UNKNOWN, "60").await.status, 404);

        // B requires IMDSv2.
        assert_eq!(get(B, "/latest/meta-data/instance-id").await.status, 401);
        let tb = token(B, "60").await;
        assert_eq!(tb.status, 200, "{}", tb.head);
        assert!(
            tb.head
                .to_ascii_lowercase()
                .contains("x-aws-ec2-metadata-token-ttl-seconds: 60"),
            "{}",
            tb.head
        );
        let tb = tb.body;
        let r = http(
            B,
            "GET",
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", &tb)],
        )
        .await;
        assert_eq!((r.status, r.body.as_str()), (200, "i-0000000000000000b"));
        let r = http(
            B,
            "GET",
            "/latest/user-data",
            &[("X-aws-ec2-metadata-token", &tb)],
        )
        .await;
        assert_eq!(r.body, "user-data-of-b");

        // A token is bound to the address it was issued to, in both directions.
        let ta = token(A, "21600").await;
        assert_eq!(ta.status, 200);
        let r = http(
            B,
            "GET",
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", &ta.body)],
        )
        .await;
        assert_eq!(r.status, 401);
        let r = http(
            A,
            "GET",
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", &tb)],
        )
        .await;
        assert_eq!(r.status, 401, "A presenting B's token");
        let r = http(
            A,
            "GET",
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", &ta.body)],
        )
        .await;
        assert_eq!((r.status, r.body.as_str()), (200, "i-0000000000000000a"));
        let r = http(
            A,
            "GET",
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", "forged")],
        )
        .await;
        assert_eq!(r.status, 401);

        // TTL bounds and proxies.
        for bad in ["0", "21601", "x"] {
            assert_eq!(token(A, bad).await.status, 400, "ttl {bad}");
        }
        assert_eq!(
            http(A, "PUT", "/latest/api/token", &[]).await.status,
            400,
            "ttl header missing"
        );
        let fwd = [
            ("X-aws-ec2-metadata-token-ttl-seconds", "60"),
            ("X-Forwarded-For", "1.2.3.4"),
        ];
        assert_eq!(http(A, "PUT", "/latest/api/token", &fwd).await.status, 403);
        assert_eq!(
            http(A, "POST", "/latest/meta-data/instance-id", &[])
                .await
                .status,
            405
        );

        // Removing an instance revokes its data and its tokens.
        registry.remove(A);
        assert_eq!(get(A, "/latest/meta-data/instance-id").await.status, 404);
        registry.upsert(A, instance("i-0000000000000000c", A, "user-data-of-c"));
        let r = http(
            A,
            "GET",
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", &ta.body)],
        )
        .await;
        assert_eq!(r.status, 401, "the previous owner's token is dead");
        assert_eq!(
            get(A, "/latest/meta-data/instance-id").await.body,
            "i-0000000000000000c"
        );

        server.abort();
    });
}
