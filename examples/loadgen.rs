//! Load generator: complete sign-ins against a real server, step by step.
//!
//! ```text
//! cargo build --release --bin clubhouse --example loadgen
//! target/release/examples/loadgen --server target/release/clubhouse \
//!     --database sqlite --signins 4000 --concurrency 32
//! ```
//!
//! It starts a test broker (the one the integration tests use) and the server binary given,
//! trusting that broker, on a fresh database (`sqlite`, or a `postgres://` URL of a server on
//! which it may create and drop a database). Then, in phases:
//!
//! 1. (untimed) each simulated browser fetches the front page for its CSRF cookie and token;
//! 2. **login**: `POST /login` for every sign-in, keeping the nonce and binding cookie;
//! 3. (untimed) the broker's tokens are minted, on all cores: RSA signing costs the generator
//!    far more than verifying costs the server;
//! 4. **verify**: `POST /verify` as the broker's page would, with the binding cookie;
//! 5. **members**: `GET /members` with the new sessions.
//!
//! By default every sign-in is a first sign-in (a new member, in `SIGNUP_MODE=open`);
//! `--returning` signs in members that already exist, the common case on a running site.
//!
//! `--front-page` times the front page too, once per sign-in (each sign-in then uses its own
//! page's CSRF cookie and token), and reports the CPU of the whole sign-in: front page, start,
//! verify. `--demo-rp DIR` runs the same against Portier's reference relying party
//! (github.com/portier/demo-rp, a copy in `DIR`, started with `--python`, default `python3`,
//! on the Redis at `--redis`, default `redis://127.0.0.1:6379/15`) instead of this server:
//! its front page, `POST /login`, `POST /verify`, and its signed-in front page as the
//! "members" page. See BENCHMARKS.md, "Side by side with the reference".
//!
//! `--set NAME=VALUE` (repeatable) gives the server one more setting, for example
//! `--set FLOOR_WRITES=site` for `examples/stack_floor`.
//!
//! For each timed phase it prints requests per second, p50/p90/p99 latency and errors by kind,
//! with the server's CPU time (from /proc) and its own. Every defense stays on; only the rate
//! limits are raised through their settings, and the report names them.

#[path = "common/proc.rs"]
mod proc;

#[path = "../tests/api/broker.rs"]
#[allow(dead_code)]
mod broker;

use std::collections::BTreeMap;

use proc::{context_switches, cpu_seconds};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::TestBroker;
use futures_util::StreamExt;
use futures_util::stream;

/// Settings the server runs with, besides its address, database and broker.
const SERVER_SETTINGS: [(&str, &str); 3] = [
    ("SIGNUP_MODE", "open"),
    ("RATE_LIMIT_LOGIN_PER_IP", "100000000/1m"),
    ("RATE_LIMIT_LOGIN_PER_EMAIL", "100/1m"),
];

struct Args {
    server: String,
    database: String,
    signins: usize,
    concurrency: usize,
    members_per_signin: usize,
    /// Fail (exit 1) when verify is slower than this many per second, or on any error.
    min_verify_rps: Option<f64>,
    /// Members to add before the run.
    preload_members: u64,
    /// Expired login attempts to add before the run (waiting for the purge).
    preload_expired: u64,
    /// The server's PURGE_INTERVAL.
    purge_interval: String,
    /// Sign in existing members (preloaded) instead of new ones.
    returning: bool,
    /// Time the front page, once per sign-in.
    front_page: bool,
    /// Run Portier's demo-rp from this folder instead of the server.
    demo_rp: Option<String>,
    /// The Python that runs demo-rp.
    python: String,
    /// The Redis demo-rp keeps its nonces in.
    redis: String,
    /// More settings for the server (`--set NAME=VALUE`), reported with the others.
    extra: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        server: "target/release/clubhouse".into(),
        database: "sqlite".into(),
        signins: 2000,
        concurrency: 32,
        members_per_signin: 4,
        min_verify_rps: None,
        preload_members: 0,
        preload_expired: 0,
        purge_interval: "1h".into(),
        returning: false,
        front_page: false,
        demo_rp: None,
        python: "python3".into(),
        redis: "redis://127.0.0.1:6379/15".into(),
        extra: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => args.server = value()?,
            "--database" => args.database = value()?,
            "--signins" => args.signins = value()?.parse().map_err(|_| "--signins: a number")?,
            "--concurrency" => {
                args.concurrency = value()?.parse().map_err(|_| "--concurrency: a number")?
            }
            "--members-per-signin" => {
                args.members_per_signin = value()?
                    .parse()
                    .map_err(|_| "--members-per-signin: a number")?
            }
            "--preload-members" => {
                args.preload_members = value()?
                    .parse()
                    .map_err(|_| "--preload-members: a number")?
            }
            "--preload-expired" => {
                args.preload_expired = value()?
                    .parse()
                    .map_err(|_| "--preload-expired: a number")?
            }
            "--purge-interval" => args.purge_interval = value()?,
            "--returning" => args.returning = true,
            "--front-page" => args.front_page = true,
            "--demo-rp" => {
                args.demo_rp = Some(value()?);
                args.front_page = true;
            }
            "--python" => args.python = value()?,
            "--redis" => args.redis = value()?,
            "--set" => {
                let setting = value()?;
                let (name, v) = setting.split_once('=').ok_or("--set: NAME=VALUE")?;
                args.extra.push((name.to_owned(), v.to_owned()));
            }
            "--min-verify-rps" => {
                args.min_verify_rps =
                    Some(value()?.parse().map_err(|_| "--min-verify-rps: a number")?)
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.demo_rp.is_some() && (args.returning || args.preload_members > 0) {
        return Err("--demo-rp keeps no members: no --returning or --preload-members".into());
    }
    if args.returning {
        // The members who sign in must exist first.
        args.preload_members = args.preload_members.max(args.signins as u64);
    }
    Ok(args)
}

/// Resident memory of a process in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, usize>,
    wall: Duration,
    server_cpu: f64,
    own_cpu: f64,
    server_switches: u64,
}

impl Phase {
    fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn pct(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    }

    fn print(&self, name: &str) {
        let errors: usize = self.errors.values().sum();
        println!(
            "{name:<8} {:>6} ok {:>5} err {:>9.0}/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  server cpu {:>6.3} s ({:.0} us and {:.1} context switches per request)  loadgen cpu {:>6.3} s  {:?}",
            self.latencies.len(),
            errors,
            self.rps(),
            self.pct(0.50),
            self.pct(0.90),
            self.pct(0.99),
            self.server_cpu,
            self.server_cpu * 1e6 / (self.latencies.len() + errors).max(1) as f64,
            self.server_switches as f64 / (self.latencies.len() + errors).max(1) as f64,
            self.own_cpu,
            self.errors
        );
    }
}

/// A simulated browser's cookies and form token.
#[derive(Clone, Default)]
struct Visitor {
    csrf_cookie: String,
    csrf_token: String,
}

/// One sign-in in progress.
#[derive(Clone, Default)]
struct SignIn {
    email: String,
    nonce: String,
    binding: String,
    token: String,
    session: String,
}

fn cookie_value(res_headers: &actix_web::http::header::HeaderMap, name: &str) -> Option<String> {
    res_headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

async fn timed<T, F, Fut>(pid: &str, items: Vec<T>, concurrency: usize, f: F) -> (Phase, Vec<T>)
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = (T, Result<Duration, String>)>,
{
    let (server0, own0, switches0, t0) = (
        cpu_seconds(pid),
        cpu_seconds("self"),
        context_switches(pid),
        Instant::now(),
    );
    let results: Vec<(T, Result<Duration, String>)> = stream::iter(items)
        .map(&f)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut phase = Phase {
        wall: t0.elapsed(),
        server_cpu: cpu_seconds(pid) - server0,
        own_cpu: cpu_seconds("self") - own0,
        server_switches: context_switches(pid).saturating_sub(switches0),
        ..Phase::default()
    };
    let mut done = Vec::new();
    for (item, r) in results {
        match r {
            Ok(d) => {
                phase.latencies.push(d);
                done.push(item);
            }
            Err(kind) => *phase.errors.entry(kind).or_default() += 1,
        }
    }
    (phase, done)
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let broker = TestBroker::start_with_auth_host("127.0.0.1", "127.0.0.1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port());
    let Ok(port) = port else {
        eprintln!("loadgen: no free port");
        return std::process::ExitCode::FAILURE;
    };
    let base = format!("http://127.0.0.1:{port}");
    let (database_url, cleanup) = match fresh_database(&args.database).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let mut command = match &args.demo_rp {
        None => {
            let mut c = Command::new(&args.server);
            c.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("PUBLIC_URL", &base)
                .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
                .env("DATABASE_URL", &database_url)
                .env("BROKER_URL", &broker.origin)
                .envs(SERVER_SETTINGS)
                .env("PURGE_INTERVAL", &args.purge_interval)
                .env("RUST_LOG", "warn,clubhouse::domain::purge=info")
                .envs(args.extra.iter().map(|(k, v)| (k, v)));
            c
        }
        Some(dir) => {
            let mut c = Command::new(&args.python);
            c.arg("server.py")
                .current_dir(dir)
                .env("DEMO_LISTEN_IP", "127.0.0.1")
                .env("DEMO_LISTEN_PORT", port.to_string())
                .env("DEMO_WEBSITE_URL", &base)
                .env("DEMO_BROKER_URL", &broker.origin)
                .env("DEMO_REDIS_URL", &args.redis)
                .env("DEMO_SECRET", uuid::Uuid::new_v4().simple().to_string());
            c
        }
    };
    let mut server: Child = match command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "loadgen: cannot start {}: {e}",
                args.demo_rp.as_deref().unwrap_or(&args.server)
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    let pid = server.id().to_string();
    // Pass the server's log through, marking the purge's lines.
    if let Some(stderr) = server.stderr.take() {
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("purged") {
                    println!("server: {line}");
                } else {
                    eprintln!("server: {line}");
                }
            }
        });
    }
    let client = awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(30))
        // Idle connections are not reused after 3 s: the server closes them after 5 s (actix-web's
        // keep-alive), and a request sent just as it does fails.
        .connector(
            awc::Connector::new()
                .limit(args.concurrency * 2)
                .conn_keep_alive(Duration::from_secs(3)),
        )
        .finish();
    // Ready: the first answered request, with migrations applied.
    let startup = loop {
        let ready = if args.demo_rp.is_some() {
            "/"
        } else {
            "/healthz"
        };
        if let Ok(res) = client.get(format!("{base}{ready}")).send().await
            && res.status().is_success()
        {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(30) {
            eprintln!("loadgen: the server did not start");
            let _ = server.kill();
            return std::process::ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let rss_idle = rss_mib(server.id());
    if args.preload_members > 0 || args.preload_expired > 0 {
        let t = Instant::now();
        if let Err(e) = preload(&database_url, args.preload_members, args.preload_expired).await {
            eprintln!("loadgen: preload failed: {e}");
            let _ = server.kill();
            return std::process::ExitCode::FAILURE;
        }
        println!(
            "preloaded {} members and {} expired login attempts in {:.1} s",
            args.preload_members,
            args.preload_expired,
            t.elapsed().as_secs_f64()
        );
    }

    match &args.demo_rp {
        None => println!(
            "server {} on {} ({}), settings {:?}",
            args.server,
            base,
            if args.database == "sqlite" {
                "sqlite"
            } else {
                "postgres"
            },
            SERVER_SETTINGS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain(args.extra.iter().cloned())
                .collect::<Vec<_>>()
        ),
        Some(dir) => println!(
            "demo-rp from {dir} on {base} ({} server.py, nonces in {})",
            args.python, args.redis
        ),
    }
    println!(
        "sign-ins {} ({}), concurrency {}, members pages per sign-in {}; start-up to first answer {:.0} ms; RSS idle {:.1} MiB",
        args.signins,
        if args.returning {
            "returning members"
        } else {
            "first sign-ins"
        },
        args.concurrency,
        args.members_per_signin,
        startup.as_secs_f64() * 1000.0,
        rss_idle
    );

    // 1. Each simulated browser gets its CSRF cookie and token (untimed), or with
    // --front-page each sign-in its own (timed).
    let front_pages = if args.front_page {
        args.signins
    } else {
        args.concurrency
    };
    let (front, visitors) = timed(
        &pid,
        (0..front_pages).map(|i| (i, Visitor::default())).collect(),
        args.concurrency,
        |(i, _)| front_page(&client, &base, i),
    )
    .await;
    let mut visitors: Vec<Visitor> = {
        let mut v = visitors;
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, v)| v).collect()
    };
    if visitors.len() != front_pages {
        front.print("front");
        eprintln!("loadgen: front page failed");
        return std::process::ExitCode::FAILURE;
    }
    if args.demo_rp.is_some() {
        // demo-rp has no CSRF token; its form posts the address alone.
        for v in &mut visitors {
            v.csrf_token.clear();
        }
    }

    // 2. login
    let signins: Vec<(usize, SignIn)> = (0..args.signins)
        .map(|i| {
            (
                i,
                SignIn {
                    email: if args.returning {
                        // The preloaded members are pre1 to preN.
                        format!("pre{}@load.test", i + 1)
                    } else {
                        format!("user{i}@load.test")
                    },
                    ..SignIn::default()
                },
            )
        })
        .collect();
    let (login, signins) = timed(&pid, signins, args.concurrency, |(i, mut s)| {
        let client = &client;
        let base = &base;
        let v = visitors[i % visitors.len()].clone();
        async move {
            let t = Instant::now();
            let mut form = vec![("email", s.email.as_str())];
            if !v.csrf_token.is_empty() {
                form.push(("csrf_token", v.csrf_token.as_str()));
            }
            let res = client
                .post(format!("{base}/login"))
                .insert_header(("origin", base.as_str()))
                .insert_header(("cookie", format!("clubhouse_csrf={}", v.csrf_cookie)))
                .send_form(&form)
                .await;
            let r = match res {
                Err(e) => Err(format!("send: {e}")),
                Ok(res) if !matches!(res.status().as_u16(), 302 | 303) => {
                    Err(format!("status {}", res.status().as_u16()))
                }
                Ok(res) => {
                    let location = res
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    s.nonce = url::Url::parse(location)
                        .ok()
                        .and_then(|u| {
                            u.query_pairs()
                                .find(|(k, _)| k == "nonce")
                                .map(|(_, v)| v.into_owned())
                        })
                        .unwrap_or_default();
                    s.binding = cookie_value(res.headers(), "clubhouse_login").unwrap_or_default();
                    Ok(t.elapsed())
                }
            };
            ((i, s), r)
        }
    })
    .await;

    // 3. Mint the tokens on all cores (untimed).
    let client_id = base.clone();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let chunk = signins.len().div_ceil(threads).max(1);
    let mut minted: Vec<(usize, SignIn)> = Vec::with_capacity(signins.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = signins
            .chunks(chunk)
            .map(|part| {
                let (broker, client_id) = (&broker, &client_id);
                scope.spawn(move || {
                    part.iter()
                        .map(|(i, s)| {
                            let claims = broker.claims(client_id, &s.nonce, &s.email);
                            (
                                *i,
                                SignIn {
                                    token: broker.token(&claims),
                                    ..s.clone()
                                },
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            minted.extend(h.join().unwrap_or_default());
        }
    });

    // 4. verify
    let (session_cookie, members_path) = match args.demo_rp {
        None => ("clubhouse_session", "/members"),
        // demo-rp's session is a signed cookie holding the address; its signed-in page is /.
        Some(_) => ("email", "/"),
    };
    let (verify, verified) = timed(&pid, minted, args.concurrency, |(i, mut s)| {
        let client = &client;
        let base = &base;
        async move {
            let t = Instant::now();
            let res = client
                .post(format!("{base}/verify"))
                .insert_header(("origin", "null"))
                .insert_header(("cookie", format!("clubhouse_login={}", s.binding)))
                .send_form(&[("id_token", s.token.as_str()), ("state", "")])
                .await;
            let r = match res {
                Err(e) => Err(format!("send: {e}")),
                Ok(res) if !matches!(res.status().as_u16(), 302 | 303) => {
                    Err(format!("status {}", res.status().as_u16()))
                }
                Ok(res) => match cookie_value(res.headers(), session_cookie) {
                    Some(session) => {
                        s.session = session;
                        Ok(t.elapsed())
                    }
                    None => Err("no session cookie".to_owned()),
                },
            };
            ((i, s), r)
        }
    })
    .await;

    // 5. members
    let pages: Vec<(usize, SignIn)> = (0..args.members_per_signin)
        .flat_map(|_| verified.iter().cloned())
        .collect();
    let (members, _) = timed(&pid, pages, args.concurrency, |(i, s)| {
        let client = &client;
        let base = &base;
        async move {
            let t = Instant::now();
            let res = client
                .get(format!("{base}{members_path}"))
                .insert_header(("cookie", format!("{session_cookie}={}", s.session)))
                .send()
                .await;
            let r = match res {
                Err(e) => Err(format!("send: {e}")),
                Ok(mut res) if res.status() == 200 => {
                    let _ = res.body().limit(8 << 20).await;
                    Ok(t.elapsed())
                }
                Ok(res) => Err(format!("status {}", res.status().as_u16())),
            };
            ((i, s), r)
        }
    })
    .await;

    let rss_load = rss_mib(server.id());
    if args.front_page {
        front.print("front");
    }
    login.print("login");
    verify.print("verify");
    members.print("members");
    let complete = verify.latencies.len().max(1) as f64;
    println!(
        "server CPU per complete sign-in (login + verify): {:.3} ms; RSS after load {:.1} MiB",
        (login.server_cpu + verify.server_cpu) / complete * 1000.0,
        rss_load
    );
    if args.front_page {
        println!(
            "server CPU per whole sign-in (front page + login + verify): {:.3} ms",
            (front.server_cpu + login.server_cpu + verify.server_cpu) / complete * 1000.0
        );
    }

    let _ = server.kill();
    let _ = server.wait();
    cleanup.await;

    let errors: usize = [&front, &login, &verify, &members]
        .iter()
        .map(|p| p.errors.values().sum::<usize>())
        .sum();
    if let Some(min) = args.min_verify_rps {
        if errors > 0 || verify.rps() < min {
            eprintln!(
                "loadgen: regression: {errors} errors, verify {:.0}/s (minimum {min}/s)",
                verify.rps()
            );
            return std::process::ExitCode::FAILURE;
        }
        println!(
            "loadgen: guard passed (no errors, verify {:.0}/s >= {min}/s)",
            verify.rps()
        );
    }
    std::process::ExitCode::SUCCESS
}

/// One front page, as a browser without cookies gets it: its CSRF cookie and form token
/// (empty where the page has none).
async fn front_page(
    client: &awc::Client,
    base: &str,
    i: usize,
) -> ((usize, Visitor), Result<Duration, String>) {
    let t = Instant::now();
    let mut res = match client.get(format!("{base}/")).send().await {
        Ok(res) => res,
        Err(e) => return ((i, Visitor::default()), Err(format!("send: {e}"))),
    };
    if res.status() != 200 {
        return (
            (i, Visitor::default()),
            Err(format!("status {}", res.status().as_u16())),
        );
    }
    let body = res.body().await.unwrap_or_default();
    let took = t.elapsed();
    let body = String::from_utf8_lossy(&body);
    let marker = r#"name="csrf_token" value=""#;
    let token = body
        .find(marker)
        .map(|i| {
            body[i + marker.len()..]
                .split('"')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    let visitor = Visitor {
        csrf_cookie: cookie_value(res.headers(), "clubhouse_csrf").unwrap_or_default(),
        csrf_token: token,
    };
    ((i, visitor), Ok(took))
}

/// Adds `members` active members and `expired` expired login attempts, each in one statement.
async fn preload(url: &str, members: u64, expired: u64) -> Result<(), sqlx::Error> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await?;
    if members > 0 {
        sqlx::query(
            "INSERT INTO members (id, email, display_name, role, status, created_at) \
             WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < $1) \
             SELECT 'pre-' || x, 'pre' || x || '@load.test', 'pre' || x, 'member', 'active', 0 FROM n",
        )
        .bind(members as i64)
        .execute(&pool)
        .await?;
    }
    if expired > 0 {
        sqlx::query(
            "INSERT INTO login_attempts (nonce, email, next_path, created_at, expires_at) \
             WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < $1) \
             SELECT 'old-' || x, 'old' || x || '@load.test', '/', 0, 1 FROM n",
        )
        .bind(expired as i64)
        .execute(&pool)
        .await?;
    }
    pool.close().await;
    Ok(())
}

/// A fresh database URL, and a future that removes it.
async fn fresh_database(
    spec: &str,
) -> Result<
    (
        String,
        std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
    ),
    String,
> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    if spec == "sqlite" {
        let path = std::env::temp_dir().join(format!("clubhouse-load-{id}.db"));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let cleanup = async move {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        };
        return Ok((url, Box::pin(cleanup)));
    }
    use sqlx::{Connection, Executor};
    let name = format!("clubhouse_load_{id}");
    let mut conn = sqlx::PgConnection::connect(spec)
        .await
        .map_err(|e| format!("postgres: {e}"))?;
    conn.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .await
        .map_err(|e| format!("create database: {e}"))?;
    let mut url = url::Url::parse(spec).map_err(|e| e.to_string())?;
    url.set_path(&name);
    let admin = spec.to_owned();
    let cleanup = async move {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                )))
                .await;
        }
    };
    Ok((url.to_string(), Box::pin(cleanup)))
}
