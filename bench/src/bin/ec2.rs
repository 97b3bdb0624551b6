//! EC2 benchmark: `DescribeInstances` on kumo's EC2 front end (SigV4 verification, ec2 query
//! parsing, filters, tags joined in, EC2 XML) against the native `GET /v1/instances` list (bearer
//! token, JSON) on the same server, same project, same 1,000 instances, in the same run.
//!
//! Set-up: a real `kumo server` (private netns, TCG, in-process agent), the tiny image, the project
//! `default` (unlimited quotas), a member `bench-user` with an access key (EC2) and a pinned API
//! token (`/v1`), a network with a /20 subnet, and `--instances` (default 1,000) instances created
//! **stopped** through `POST /v1/instances` (no guest competes for the CPU), every tenth tagged
//! `group=g<n>` with `CreateTags`.
//!
//! Cases, each driven by `--concurrency` tasks (default 32) on one keep-alive `reqwest` client, back
//! to back, `--secs` seconds (default 5), interleaved for `--rounds` rounds (default 2) after a 1 s
//! warm-up of each; requests are signed in this process with `kumo_ec2::sign` (the HMAC costs
//! microseconds: the client is not the bottleneck):
//!
//! - all: `DescribeInstances` with `instance-state-name=stopped` and `instance-type=nano` (every
//!   instance matches: a 1,000-item answer) vs `GET /v1/instances?limit=1000` (1,000 items);
//! - tag: `DescribeInstances` with `tag:group=g3` (a tenth match) vs the same native list;
//! - one: `DescribeInstances InstanceId.1=…` (Terraform's read) vs `GET /v1/instances/{id}`.
//!
//! Usage: `cargo run --release -p kumo-bench --bin ec2 -- [--instances N] [--secs N] [--rounds N]
//! [--concurrency N] [--cases all,tag,one]` (root needed for the private netns the server runs in).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use kumo_bench::{Cloud, enter_netns, percentile, runtime, table};
use serde_json::{Value, json};

const REGION: &str = "kumo-1";
/// The default project: unlimited quotas out of the box (other projects default to 50 instances).
const PROJECT: &str = "default";

struct Args {
    instances: usize,
    secs: u64,
    rounds: usize,
    concurrency: usize,
    /// Which cases to run (`all`, `tag`, `one`).
    cases: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        instances: 1000,
        secs: 5,
        rounds: 2,
        concurrency: 32,
        cases: vec!["all".into(), "tag".into(), "one".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = || it.next().with_context(|| format!("{x} needs a value"));
        match x.as_str() {
            "--instances" => a.instances = val()?.parse()?,
            "--secs" => a.secs = val()?.parse()?,
            "--rounds" => a.rounds = val()?.parse()?,
            "--concurrency" => a.concurrency = val()?.parse()?,
            "--cases" => a.cases = val()?.split(',').map(str::to_string).collect(),
            other => bail!(
                "unknown argument {other} (expected --instances, --secs, --rounds, \
                 --concurrency, --cases)"
            ),
        }
    }
    if !(10..=1000).contains(&a.instances) {
        bail!("--instances must be 10..=1000 (one native page)");
    }
    if !(1..=30).contains(&a.secs) || !(1..=10).contains(&a.rounds) {
        bail!("--secs must be 1..=30 and --rounds 1..=10 (bounded run time)");
    }
    if let Some(c) = a
        .cases
        .iter()
        .find(|c| !["all", "tag", "one"].contains(&c.as_str()))
    {
        bail!("--cases: unknown case {c} (expected a comma-separated list of all, tag, one)");
    }
    if !(1..=256).contains(&a.concurrency) {
        bail!("--concurrency must be 1..=256");
    }
    Ok(a)
}

/// An EC2 access key.
#[derive(Clone)]
struct Key {
    id: String,
    secret: String,
}

/// How one case builds its request.
#[derive(Clone)]
enum Target {
    /// `POST /` with this form body, signed with the key.
    Ec2 { body: String, key: Key },
    /// `GET path` with the bearer token.
    Native { path: String, token: String },
}

/// Build a ready-to-send request for `target` on the server at `base` (`http://host:port`).
fn request(
    client: &reqwest::Client,
    base: &str,
    host: &str,
    target: &Target,
) -> Result<reqwest::Request> {
    match target {
        Target::Ec2 { body, key } => {
            let mut req = kumo_ec2::Request::new("POST", "/")
                .with_header("Host", host)
                .with_header(
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )
                .with_body(body.as_bytes().to_vec());
            kumo_ec2::sign(
                &mut req,
                &kumo_ec2::SigningParams {
                    access_key_id: &key.id,
                    secret_access_key: &key.secret,
                    region: REGION,
                    service: "ec2",
                    time: chrono::Utc::now(),
                },
            )
            .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
            let mut b = client.post(format!("{base}/"));
            for (n, v) in &req.headers {
                b = b.header(n.as_str(), v.as_str());
            }
            Ok(b.body(req.body).build()?)
        }
        Target::Native { path, token } => Ok(client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .build()?),
    }
}

#[derive(Default)]
struct Sample {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    lat_us: Vec<f64>,
}

impl Sample {
    fn merge(&mut self, o: Sample) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.elapsed += o.elapsed;
        self.lat_us.extend(o.lat_us);
    }
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Drive `target` from `conc` tasks for `dur`.
async fn load(
    client: &reqwest::Client,
    base: &str,
    host: &str,
    target: &Target,
    conc: usize,
    dur: Duration,
) -> Result<Sample> {
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::with_capacity(conc);
    for _ in 0..conc {
        let (client, base, host, target) = (
            client.clone(),
            base.to_string(),
            host.to_string(),
            target.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut s = Sample::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let ok = match request(&client, &base, &host, &target) {
                    Ok(req) => match client.execute(req).await {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                if ok {
                    s.ok += 1;
                    s.lat_us.push(t0.elapsed().as_secs_f64() * 1e6);
                } else {
                    s.errors += 1;
                }
            }
            s
        }));
    }
    let mut total = Sample::default();
    for t in tasks {
        total.merge(t.await.context("client task")?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// One request of `target`: (status, body).
async fn once(
    client: &reqwest::Client,
    base: &str,
    host: &str,
    target: &Target,
) -> Result<(u16, String)> {
    let r = client.execute(request(client, base, host, target)?).await?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// A `/v1` call with the admin token acting in `project`.
async fn admin(cloud: &Cloud, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let mut req = cloud
        .http
        .request(method.parse()?, format!("{}{}", cloud.url(), path))
        .bearer_auth(&cloud.token)
        .header("X-Kumo-Project", PROJECT);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req
        .send()
        .await
        .with_context(|| format!("{method} {path}"))?;
    let st = r.status().as_u16();
    let v: Value = serde_json::from_slice(&r.bytes().await?).unwrap_or(Value::Null);
    if !(200..300).contains(&st) {
        bail!("{method} {path} answered {st}: {v}");
    }
    Ok(v)
}

/// The user, its access key and API token, a network, and `n` stopped instances; returns
/// (key, token, instance ids).
async fn populate(cloud: &Cloud, n: usize) -> Result<(Key, String, Vec<String>)> {
    cloud
        .cli(&[
            "user",
            "create",
            "bench-user",
            "--role",
            &format!("{PROJECT}=member"),
        ])
        .await?;
    let k: Value = serde_json::from_str(
        &cloud
            .cli(&[
                "--json",
                "--project",
                PROJECT,
                "access-key",
                "create",
                "--user",
                "bench-user",
            ])
            .await?,
    )?;
    let key = Key {
        id: k["access_key_id"]
            .as_str()
            .context("access_key_id")?
            .to_string(),
        secret: k["secret_access_key"]
            .as_str()
            .context("secret_access_key")?
            .to_string(),
    };
    let t: Value = serde_json::from_str(
        &cloud
            .cli(&[
                "--json",
                "--project",
                PROJECT,
                "token",
                "create",
                "--user",
                "bench-user",
            ])
            .await?,
    )?;
    let token = t["token"].as_str().context("token")?.to_string();
    cloud
        .cli(&[
            "--project",
            PROJECT,
            "network",
            "create",
            "--name",
            "benchnet",
        ])
        .await?;
    cloud
        .cli(&[
            "--project",
            PROJECT,
            "subnet",
            "create",
            "--name",
            "bench-a",
            "--network",
            "benchnet",
            "--cidr",
            "198.19.0.0/20",
        ])
        .await?;
    let t0 = Instant::now();
    let ids: Vec<Result<String>> = futures::stream::iter(0..n)
        .map(|i| async move {
            let v = admin(
                cloud,
                "POST",
                "/v1/instances",
                Some(
                    json!({"name": format!("b{i:04}"), "image": "tiny", "instance_type": "nano",
                            "network": "benchnet", "start": false}),
                ),
            )
            .await?;
            v["id"].as_str().map(str::to_string).context("no id")
        })
        .buffered(8)
        .collect()
        .await;
    let ids = ids.into_iter().collect::<Result<Vec<_>>>()?;
    eprintln!(
        "created {n} stopped instances in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok((key, token, ids))
}

fn ec2_body(params: &[(&str, &str)]) -> String {
    let mut s = String::from("Action=DescribeInstances&Version=2016-11-15");
    for (k, v) in params {
        s.push('&');
        s.push_str(&kumo_ec2::sigv4::uri_encode(k));
        s.push('=');
        s.push_str(&kumo_ec2::sigv4::uri_encode(v));
    }
    s
}

async fn bench(a: Args) -> Result<()> {
    // 1,000 nano instances (1 vCPU, 256 MiB each) are placed on this one host even stopped: let it
    // take them all.
    let cloud =
        Cloud::start_with(&["--cpu-overcommit", "1000", "--memory-overcommit", "100"]).await?;
    cloud.import_tiny().await?;
    let (key, token, ids) = populate(&cloud, a.instances).await?;
    let base = cloud.url();
    let host = base.trim_start_matches("http://").to_string();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?;

    // Tag every tenth instance group=g<n> (100 ids per CreateTags).
    for (g, chunk) in ids.chunks(100).enumerate() {
        let mut p: Vec<(String, String)> = vec![
            ("Tag.1.Key".into(), "group".into()),
            ("Tag.1.Value".into(), format!("g{g}")),
        ];
        for (i, id) in chunk.iter().enumerate() {
            p.push((format!("ResourceId.{}", i + 1), id.clone()));
        }
        let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let body = ec2_body(&refs).replacen("DescribeInstances", "CreateTags", 1);
        let (st, text) = once(
            &client,
            &base,
            &host,
            &Target::Ec2 {
                body,
                key: key.clone(),
            },
        )
        .await?;
        if st != 200 {
            bail!("CreateTags answered {st}: {text}");
        }
    }

    let n = a.instances.to_string();
    let mut cases: Vec<(&str, Target, Target, usize)> = vec![
        (
            "all",
            Target::Ec2 {
                body: ec2_body(&[
                    ("Filter.1.Name", "instance-state-name"),
                    ("Filter.1.Value.1", "stopped"),
                    ("Filter.2.Name", "instance-type"),
                    ("Filter.2.Value.1", "nano"),
                ]),
                key: key.clone(),
            },
            Target::Native {
                path: format!("/v1/instances?limit={n}"),
                token: token.clone(),
            },
            a.instances,
        ),
        (
            "tag",
            Target::Ec2 {
                body: ec2_body(&[("Filter.1.Name", "tag:group"), ("Filter.1.Value.1", "g3")]),
                key: key.clone(),
            },
            Target::Native {
                path: format!("/v1/instances?limit={n}"),
                token: token.clone(),
            },
            ids.chunks(100).nth(3).map_or(0, <[String]>::len),
        ),
        (
            "one",
            Target::Ec2 {
                body: ec2_body(&[("InstanceId.1", &ids[0])]),
                key: key.clone(),
            },
            Target::Native {
                path: format!("/v1/instances/{}", ids[0]),
                token: token.clone(),
            },
            1,
        ),
    ];

    cases.retain(|(name, ..)| a.cases.iter().any(|c| c == name));
    // Check each answer once: the same instances on both sides.
    for (name, ec2, native, want) in &cases {
        let (st, text) = once(&client, &base, &host, ec2).await?;
        let got = text.matches("<instanceId>").count();
        if st != 200 || got != *want {
            bail!(
                "{name}: DescribeInstances answered {st} with {got} instances (want {want}): {}",
                &text[..text.len().min(600)]
            );
        }
        let (st, text) = once(&client, &base, &host, native).await?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let items = v["items"]
            .as_array()
            .map_or(usize::from(v["id"].is_string()), Vec::len);
        if st != 200 || (*name != "tag" && items != *want) {
            bail!("{name}: native answered {st} with {items} items (want {want})");
        }
    }

    let dur = Duration::from_secs(a.secs);
    let warm = Duration::from_secs(1);
    let mut rows = vec![
        [
            "case",
            "requests",
            "errors",
            "req/s",
            "p50 ms",
            "p99 ms",
            "EC2 / native",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (name, ec2, native, want) in &cases {
        load(&client, &base, &host, ec2, a.concurrency, warm).await?;
        load(&client, &base, &host, native, a.concurrency, warm).await?;
        let (mut e, mut v) = (Sample::default(), Sample::default());
        for r in 0..a.rounds {
            let s1 = load(&client, &base, &host, ec2, a.concurrency, dur).await?;
            let s2 = load(&client, &base, &host, native, a.concurrency, dur).await?;
            eprintln!(
                "{name} round {r}: EC2 {:.0} req/s, native {:.0} req/s",
                s1.rps(),
                s2.rps()
            );
            e.merge(s1);
            v.merge(s2);
        }
        if e.ok == 0 || v.ok == 0 {
            bail!(
                "{name}: a side completed no requests (errors: EC2 {}, native {})",
                e.errors,
                v.errors
            );
        }
        let ec2_label = match *name {
            "all" => format!("EC2 DescribeInstances, 2 filters ({want} match)"),
            "tag" => format!("EC2 DescribeInstances, tag filter ({want} match)"),
            _ => "EC2 DescribeInstances InstanceId.1".to_string(),
        };
        let native_label = match *name {
            "one" => "native GET /v1/instances/{id}".to_string(),
            _ => format!("native GET /v1/instances?limit={n}"),
        };
        for (label, s, ratio) in [
            (ec2_label, &e, format!("{:.2}x", e.rps() / v.rps())),
            (native_label, &v, String::new()),
        ] {
            rows.push(vec![
                label,
                s.ok.to_string(),
                s.errors.to_string(),
                format!("{:.0}", s.rps()),
                format!(
                    "{:.2}",
                    percentile(&s.lat_us, 50.0).unwrap_or(f64::NAN) / 1e3
                ),
                format!(
                    "{:.2}",
                    percentile(&s.lat_us, 99.0).unwrap_or(f64::NAN) / 1e3
                ),
                ratio,
            ]);
        }
    }
    println!(
        "ec2: DescribeInstances vs the native list, {} stopped instances in one project \
         ({} concurrent keep-alive clients; {} rounds x {} s per case, interleaved)\n",
        a.instances, a.concurrency, a.rounds, a.secs
    );
    print!("{}", table(&rows));
    println!(
        "goal: EC2 >= 0.5x the native list's req/s with 1,000 instances and filters (recorded, not gated)"
    );
    Ok(())
}

/// A private mount namespace with a large tmpfs as `TMPDIR`: the server's data dir lands there, so
/// the host's disk capacity (what the scheduler places root disks against, at 2:1) is the tmpfs's
/// size, not this machine's free disk. Stopped instances write next to nothing. The mount vanishes
/// with the process.
fn private_tmpfs() -> Result<std::path::PathBuf> {
    use std::ffi::CString;
    // SAFETY: plain syscalls before any thread exists; every pointer is a live CString or null.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            bail!("unshare(CLONE_NEWNS): {}", std::io::Error::last_os_error());
        }
        let root = CString::new("/")?;
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            bail!("making / private: {}", std::io::Error::last_os_error());
        }
    }
    let dir = std::env::temp_dir().join(format!("kumo-ec2-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (src, target, fstype, opts) = (
        CString::new("tmpfs")?,
        CString::new(dir.to_string_lossy().as_bytes())?,
        CString::new("tmpfs")?,
        CString::new("size=4T,mode=0700")?,
    );
    // SAFETY: as above.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        bail!(
            "mounting a tmpfs on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: single-threaded still (no runtime yet).
    unsafe { std::env::set_var("TMPDIR", &dir) };
    Ok(dir)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    enter_netns();
    let tmp = private_tmpfs()?;
    let r = runtime()?.block_on(kumo_bench::until_signal(bench(args)));
    // The tmpfs goes with this mount namespace; the empty mount point on the host's /tmp does not.
    if let Ok(t) = std::ffi::CString::new(tmp.to_string_lossy().as_bytes()) {
        // SAFETY: umount2 of the mount this process made.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_dir(&tmp);
    r
}
