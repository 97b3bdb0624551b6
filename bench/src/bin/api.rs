//! API benchmark: `GET /v1/instances/{id}` on a real `kumo server` (token auth, store read, view
//! rendering) against a bare axum handler that returns the very same JSON body, served from this
//! process on its own 2-thread runtime. Both listen on 127.0.0.1 and are driven by the same client
//! loop: `--concurrency` tokio tasks sharing one keep-alive `reqwest` client, each sending requests
//! back to back for `--secs` seconds. Cases alternate (kumo, bare, kumo, bare …) for `--rounds`
//! rounds after a 1 s warm-up of each. The instance is created stopped, so no guest competes for CPU.
//!
//! Usage: `cargo run --release -p kumo-bench --bin api -- [--secs N] [--rounds N] [--concurrency N]`
//! (defaults 5, 2, 32; root needed for the private netns the server runs in).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::routing::get;
use kumo_bench::{Cloud, enter_netns, percentile, runtime, table};
use serde_json::Value;

struct Args {
    secs: u64,
    rounds: usize,
    concurrency: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        secs: 5,
        rounds: 2,
        concurrency: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = || it.next().with_context(|| format!("{x} needs a value"));
        match x.as_str() {
            "--secs" => a.secs = val()?.parse()?,
            "--rounds" => a.rounds = val()?.parse()?,
            "--concurrency" => a.concurrency = val()?.parse()?,
            other => bail!("unknown argument {other} (expected --secs, --rounds, --concurrency)"),
        }
    }
    if !(1..=30).contains(&a.secs) || !(1..=10).contains(&a.rounds) {
        bail!("--secs must be 1..=30 and --rounds 1..=10 (bounded run time)");
    }
    if !(1..=1024).contains(&a.concurrency) {
        bail!("--concurrency must be 1..=1024");
    }
    Ok(a)
}

/// What one case measured.
#[derive(Default)]
struct Sample {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    /// Per-request latency in microseconds.
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

/// Drive `url` from `conc` tasks for `dur`.
async fn load(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    conc: usize,
    dur: Duration,
) -> Result<Sample> {
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::with_capacity(conc);
    for _ in 0..conc {
        let (client, url, token) = (client.clone(), url.to_string(), token.map(str::to_string));
        tasks.push(tokio::spawn(async move {
            let mut s = Sample::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let mut req = client.get(&url);
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let ok = match req.send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
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

/// Serve `body` at `/v1/instances/{id}` on 127.0.0.1 from a dedicated 2-worker runtime thread.
/// Returns the port and a sender that stops the server.
fn spawn_bare(body: Arc<Value>) -> Result<(u16, tokio::sync::oneshot::Sender<()>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding bare server")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("bare server runtime")?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/instances/{id}",
                get(move || {
                    let body = body.clone();
                    async move { Json((*body).clone()) }
                }),
            );
            let l = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return eprintln!("bare server: {e}"),
            };
            let serve = axum::serve(l, app).with_graceful_shutdown(async {
                let _ = stop_rx.await;
            });
            if let Err(e) = serve.await {
                eprintln!("bare server: {e}");
            }
        });
    });
    Ok((port, stop_tx))
}

fn report(kumo: &Sample, bare: &Sample, body_len: usize, a: &Args) -> Result<String> {
    let row = |name: &str, s: &Sample| -> Result<Vec<String>> {
        Ok(vec![
            name.to_string(),
            s.ok.to_string(),
            s.errors.to_string(),
            format!("{:.0}", s.rps()),
            format!(
                "{:.2}",
                percentile(&s.lat_us, 50.0).context("no samples")? / 1e3
            ),
            format!(
                "{:.2}",
                percentile(&s.lat_us, 99.0).context("no samples")? / 1e3
            ),
        ])
    };
    let p99 = |s: &Sample| percentile(&s.lat_us, 99.0).unwrap_or(f64::NAN);
    let rows = vec![
        ["case", "requests", "errors", "req/s", "p50 ms", "p99 ms"]
            .map(String::from)
            .to_vec(),
        row("kumo GET /v1/instances/{id}", kumo)?,
        row("bare axum, same body", bare)?,
        vec![
            "kumo / bare".into(),
            String::new(),
            String::new(),
            format!("{:.1} %", 100.0 * kumo.rps() / bare.rps()),
            String::new(),
            format!("{:.2}x", p99(kumo) / p99(bare)),
        ],
    ];
    Ok(format!(
        "api: GET /v1/instances/{{id}} vs a bare axum handler ({body_len}-byte JSON body; \
         {} concurrent keep-alive clients; {} rounds x {} s per case, interleaved)\n\n{}",
        a.concurrency,
        a.rounds,
        a.secs,
        table(&rows)
    ))
}

async fn bench(a: Args) -> Result<()> {
    let cloud = Cloud::start().await?;
    cloud.import_tiny().await?;
    let id = cloud.run_instance("api-bench", false).await?;
    let kumo_url = format!("{}/v1/instances/{id}", cloud.url());
    let body = cloud
        .api_ok("GET", &format!("/v1/instances/{id}"), None)
        .await?;
    let body_len = serde_json::to_vec(&body)?.len();
    let (port, stop) = spawn_bare(Arc::new(body))?;
    let bare_url = format!("http://127.0.0.1:{port}/v1/instances/{id}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .tcp_nodelay(true)
        .build()?;
    let token = cloud.token.clone();
    let dur = Duration::from_secs(a.secs);
    let warm = Duration::from_secs(1);
    load(&client, &kumo_url, Some(&token), a.concurrency, warm).await?;
    load(&client, &bare_url, None, a.concurrency, warm).await?;
    let (mut kumo, mut bare) = (Sample::default(), Sample::default());
    for r in 0..a.rounds {
        let k = load(&client, &kumo_url, Some(&token), a.concurrency, dur).await?;
        let b = load(&client, &bare_url, None, a.concurrency, dur).await?;
        eprintln!(
            "round {r}: kumo {:.0} req/s, bare {:.0} req/s",
            k.rps(),
            b.rps()
        );
        kumo.merge(k);
        bare.merge(b);
    }
    let _ = stop.send(());
    print!("{}", report(&kumo, &bare, body_len, &a)?);
    println!("goal: kumo >= 50 % of the bare handler's req/s (recorded, not gated)");
    if kumo.ok == 0 || bare.ok == 0 {
        bail!("a case completed no requests");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    enter_netns();
    runtime()?.block_on(bench(args))
}
