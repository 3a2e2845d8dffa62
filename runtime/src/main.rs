//! The `tessera` command line: serve, purge, build and demo here; `check`, `key` in `cli/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use tessera::clock::Clock;
use tessera::config::{Config, Site, DEFAULT_LISTEN};
use tessera::reload::Loader;

mod cli;

/// A caching reverse proxy scripted by sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event (tracing-subscriber's JSON layer).
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy from a config file, or in front of one origin (quick start).
    Serve {
        /// Path to tessera.toml.
        #[arg(long, short, conflicts_with = "origin")]
        config: Option<PathBuf>,
        /// Origin URL for the quick start, e.g. http://127.0.0.1:9000 (https:// is checked against the system's roots).
        #[arg(long, required_unless_present = "config")]
        origin: Option<String>,
        /// Script(s) for the quick start, run in the order given.
        #[arg(long)]
        script: Vec<PathBuf>,
        /// A shield node for the quick start's misses (repeatable; keys spread over them).
        #[arg(long, requires = "origin")]
        shield: Vec<String>,
        /// The fleet's Redis, e.g. redis://127.0.0.1:6379: purges reach every node (overrides the config).
        #[arg(long)]
        redis: Option<String>,
        /// Address to listen on (overrides the config).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// This node's name in Cache-Status, X-Served-By and Via (overrides the config).
        #[arg(long)]
        name: Option<String>,
        /// Threads serving requests (overrides the config; default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Address of the admin API: purge, events, metrics, status (overrides the config).
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Reload when the config file or a script changes (SIGHUP always reloads).
        #[arg(long)]
        watch: bool,
    },
    /// Purge cached responses through a running proxy's admin API.
    #[command(group(ArgGroup::new("target").required(true).args(["url", "prefix", "tag", "site", "all"])))]
    Purge {
        /// The admin API, e.g. http://127.0.0.1:9090.
        #[arg(long)]
        admin: String,
        /// The admin token (default: the TESSERA_ADMIN_TOKEN environment variable).
        #[arg(long)]
        token: Option<String>,
        /// An absolute URL: every variant of it.
        #[arg(long)]
        url: Option<String>,
        /// An absolute URL prefix: every stored URL starting with it.
        #[arg(long)]
        prefix: Option<String>,
        /// A surrogate key (Surrogate-Key, Cache-Tag or a script's tags).
        #[arg(long)]
        tag: Option<String>,
        /// A site's name: all of it (with --tag: only that site's).
        #[arg(long)]
        site: Option<String>,
        /// Everything.
        #[arg(long)]
        all: bool,
        /// Mark stale (serve-stale windows still apply) instead of removing.
        #[arg(long)]
        soft: bool,
    },
    /// Validate a config, load and instantiate every script; non-zero exit lists the errors.
    Check {
        /// Path to tessera.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show how a request is keyed: the site, device class, hooks, default and script key.
    Key(cli::key::KeyArgs),
    /// Replay an access log through the scripts and a simulated cache: predicted hit
    /// ratio, key cardinality, origin load over time, key explosions.
    Simulate(cli::simulate::SimulateArgs),
    /// Write a realistic sample access log of a shop (for simulate).
    GenLog(cli::simulate::GenLogArgs),
    /// Run test files (*.test.toml): the site's config and scripts against sample pages,
    /// on a virtual clock, with expectations on every answer.
    Test(cli::test::TestArgs),
    /// Create a guest crate NAME to start a script from (with tests and a tessera.toml).
    New {
        /// The script's crate name (lower-case letters, digits, - and _).
        name: String,
        /// The tessera-sdk crate to depend on (default: this build's source tree).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a guest crate into a WebAssembly component and print its path.
    Build {
        /// The guest crate's directory.
        dir: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Build the example scripts, start the sample origin and the proxy in front of it.
    Demo {
        /// Address the proxy listens on.
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG").unwrap_or_else(|_| {
                // A test run reports its own results; access lines would drown them.
                if matches!(cli.command, Cmd::Test(_)) {
                    "warn".into()
                } else {
                    "info".into()
                }
            }),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a file or a collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = match cli.command {
        Cmd::Serve {
            config,
            origin,
            script,
            shield,
            redis,
            listen,
            name,
            workers,
            admin,
            watch,
        } => serve(
            Source {
                config,
                origin,
                scripts: script,
                shields: shield,
                redis,
                listen,
                name,
                workers,
                admin,
            },
            watch,
        ),
        Cmd::Purge {
            admin,
            token,
            url,
            prefix,
            tag,
            site,
            all,
            soft,
        } => {
            let mut body = serde_json::json!({ "soft": soft });
            for (k, v) in [
                ("url", url),
                ("prefix", prefix),
                ("tag", tag),
                ("site", site),
            ] {
                if let Some(v) = v {
                    body[k] = v.into();
                }
            }
            if all {
                body["all"] = true.into();
            }
            purge(&admin, token, &body)
        }
        Cmd::Check { config } => cli::check::run(&config),
        Cmd::Key(args) => cli::key::run(args),
        Cmd::Simulate(args) => cli::simulate::run(args),
        Cmd::GenLog(args) => cli::simulate::gen_log(args),
        Cmd::Test(args) => match cli::test::run(args) {
            // Failing tests are reported already; only the exit status is left to say.
            Ok(false) => return ExitCode::FAILURE,
            other => other.map(|_| ()),
        },
        Cmd::New { name, sdk } => {
            tessera::scaffold::new_guest(Path::new("."), &name, sdk.as_deref()).map(|p| {
                println!(
                    "created {}: `cd {0} && cargo test`, then `tessera build . -o {name}.wasm`",
                    p.display()
                )
            })
        }
        Cmd::Build { dir, out } => tessera::builder::build_guest(&dir, out.as_deref(), None)
            .map(|p| println!("{}", p.display())),
        Cmd::Demo { listen } => demo(listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(w) = workers {
        b.worker_threads(w);
    }
    Ok(b.enable_all().build()?)
}

/// Where the configuration comes from, so that a reload reads it the same way.
struct Source {
    config: Option<PathBuf>,
    origin: Option<String>,
    scripts: Vec<PathBuf>,
    shields: Vec<String>,
    redis: Option<String>,
    listen: Option<SocketAddr>,
    name: Option<String>,
    workers: Option<usize>,
    admin: Option<SocketAddr>,
}

impl Source {
    /// The config file, or the quick start's, with the command line's overrides.
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = match (&self.config, &self.origin) {
            (Some(path), _) => Config::load(path)?,
            (None, Some(origin)) => {
                let uri: http::Uri = origin
                    .parse()
                    .with_context(|| format!("--origin: `{origin}` is not a URL"))?;
                anyhow::ensure!(
                    matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some(),
                    "--origin: `{origin}` must be an http:// or https:// URL with a host"
                );
                for s in &self.scripts {
                    anyhow::ensure!(s.is_file(), "--script: file {} not found", s.display());
                }
                let mut site = Site::quick(uri, self.scripts.clone());
                for s in &self.shields {
                    let shield: http::Uri = s
                        .parse()
                        .ok()
                        .filter(|u: &http::Uri| {
                            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                        })
                        .with_context(|| format!("--shield: `{s}` is not an http(s) URL"))?;
                    site.shields.push(shield);
                }
                Config::quick(DEFAULT_LISTEN.parse()?, site)
            }
            (None, None) => anyhow::bail!("give --config FILE or --origin URL"),
        };
        if let Some(l) = self.listen {
            config.listen = l;
        }
        if let Some(url) = &self.redis {
            redis::Client::open(url.as_str()).context("--redis: not a Redis URL")?;
            config.fleet = Some(tessera::config::FleetConfig {
                redis: url.clone(),
                stream: tessera::config::DEFAULT_FLEET_STREAM.into(),
            });
        }
        if let Some(n) = &self.name {
            anyhow::ensure!(
                !n.is_empty()
                    && n.len() <= 64
                    && n.as_bytes()[0].is_ascii_alphabetic()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "--name: `{n}` must start with a letter and use only A-Z a-z 0-9 - _ ."
            );
            config.node_name = n.clone();
        }
        if let Some(w) = self.workers {
            anyhow::ensure!((1..=1024).contains(&w), "--workers: between 1 and 1024");
            config.server.workers = Some(w);
        }
        if let Some(a) = self.admin {
            config.admin.listen = Some(a);
        }
        Ok(config)
    }
}

fn serve(source: Source, watch: bool) -> anyhow::Result<()> {
    let config = source.load()?;
    let rt = runtime(config.server.workers)?;
    let file = source.config.clone();
    let load: Loader = Arc::new(move || source.load());
    run_until_signal(rt, config, load, watch.then_some(file), None)
}

fn purge(admin: &str, token: Option<String>, body: &serde_json::Value) -> anyhow::Result<()> {
    let token = token.or_else(|| std::env::var("TESSERA_ADMIN_TOKEN").ok());
    let answer = runtime(Some(1))?.block_on(tessera::admin::client::post(
        admin,
        token.as_deref(),
        "/purge",
        body,
    ))?;
    println!("{answer}");
    Ok(())
}

/// Lets this process hold as many connections as its hard limit allows (like nginx's
/// `worker_rlimit_nofile`); the default soft limit is often 1024.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass; no other effects.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Serves until SIGTERM or Ctrl-C, reloading on SIGHUP and, when `watch` is given (with
/// the config file, if any), when a watched file changes.
fn run_until_signal(
    rt: tokio::runtime::Runtime,
    config: Config,
    load: Loader,
    watch: Option<Option<PathBuf>>,
    banner: Option<String>,
) -> anyhow::Result<()> {
    raise_fd_limit();
    rt.block_on(async move {
        let admin_cfg = config.admin.clone();
        let shared = tessera::proxy::build(config, Clock::system()).await?;
        let admin = match admin_cfg.listen {
            Some(addr) => Some(tessera::admin::start(shared.clone(), addr, &admin_cfg).await?),
            None => None,
        };
        let running = tessera::proxy::serve(shared.clone()).await?;
        // Before the listening line: a supervisor may signal as soon as it reads it, and an
        // unhandled SIGHUP would end the process.
        tessera::reload::on_sighup(shared.clone(), load.clone())?;
        // SIGTERM and SIGINT too: one arriving between the listening line and a handler
        // installed later would kill the process at once, queued disk writes and all.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        // Watching starts from the files as they are before the listening line, so that a
        // change made as soon as it is read is never taken for the starting point.
        if let Some(file) = watch {
            tessera::reload::watch(shared.clone(), load, file, tessera::reload::WATCH_EVERY);
        }
        // The admin and extra listeners first: a supervisor reading up to the listening line
        // has them all.
        if let Some(a) = &admin {
            println!("tessera admin on http://{}", a.addr);
        }
        for (addr, scheme) in &running.listeners {
            println!("tessera also listening on {scheme}://{addr}");
        }
        println!("tessera listening on http://{}", running.addr);
        if let Some(b) = banner {
            let admin_addr = admin
                .as_ref()
                .map_or("(no admin)".into(), |a| a.addr.to_string());
            println!(
                "{}",
                b.replace("{addr}", &running.addr.to_string())
                    .replace("{admin}", &admin_addr)
            );
        }
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("shutting down: draining requests in flight");
        running.shutdown().await;
        if let Some(a) = admin {
            a.shutdown().await;
        }
        // Fills still in flight finish first (a client that had all its bytes may be gone
        // before the fill that read them for it has stored them), within the drain time.
        let deadline = std::time::Instant::now() + shared.generation().config.server.drain_timeout;
        while !shared.flights.is_idle() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if let Some(disk) = shared.store.disk().cloned() {
            // What is queued for the disk is part of the cache a restart finds.
            tokio::task::spawn_blocking(move || disk.close()).await?;
        }
        eprintln!("stopped");
        Ok(())
    })
}

fn demo(listen: SocketAddr) -> anyhow::Result<()> {
    let root = repo_root()?;
    let out = root.join("target").join("demo");
    let mut scripts = Vec::new();
    for name in ["normalize-key", "ttl-by-type", "personalize"] {
        eprintln!("building guest-examples/{name}…");
        let wasm = tessera::builder::build_guest(
            &root.join("guest-examples").join(name),
            Some(&out.join(format!("{name}.wasm"))),
            None,
        )?;
        scripts.push(wasm);
    }
    let rt = runtime(None)?;
    let origin = rt.block_on(tessera::demo::start_sample_origin(
        root.join("samples").join("site"),
        "127.0.0.1:0".parse()?,
    ))?;
    let mut site = Site::quick(format!("http://{origin}").parse()?, scripts);
    site.name = "demo".into();
    // The sample pages are assembled from fragments (ESI) and personalised per visitor.
    site.esi.paths = vec!["/news/".into(), "/products/".into()];
    let mut config = Config::quick(listen, site);
    config.node_name = "demo-edge".into();
    // The admin API on loopback next to the proxy (no token: loopback only), and a
    // publish event a CMS would send when a product changes.
    let admin_port = if listen.port() == 0 {
        0
    } else {
        listen.port().wrapping_add(1)
    };
    config.admin.listen = Some(SocketAddr::new(
        std::net::Ipv4Addr::LOCALHOST.into(),
        admin_port,
    ));
    config.events = vec![tessera::config::EventRule {
        event: "publish".into(),
        kind: Some("product".into()),
        tags: vec!["products-{id}".into()],
        urls: Vec::new(),
        prefixes: Vec::new(),
        soft: false,
    }];
    let banner = format!(
        "sample origin on http://{origin} (serving samples/site)\n\ntry:\n  \
         curl -i http://{{addr}}/products/123                       # miss, then hit: see Cache-Status\n  \
         curl -i 'http://{{addr}}/products/123?utm_source=mail&fbclid=x'  # a hit: tracking params are not in the key\n  \
         curl -i -A 'Mozilla/5.0 (iPhone) Mobile' http://{{addr}}/products/123  # separate mobile entry\n  \
         curl -i http://{{addr}}/api/products/123                   # JSON: ttl 300, stale-while-revalidate 3600\n  \
         curl -sI http://{{addr}}/images/logo.png                   # image: ttl 30 days\n  \
         curl -i http://{{addr}}/cart                               # never stored\n  \
         curl -s http://{{addr}}/news/article                       # one cached article, assembled from fragments\n  \
         curl -s -b 'user=Ann; segment=pro; cart=2' http://{{addr}}/news/article  # the same copy, personalised for Ann\n  \
         curl -s -X POST http://{{admin}}/events -d '{{\"event\":\"publish\",\"type\":\"product\",\"id\":\"123\"}}'  # a CMS publish purges products-123\n  \
         curl -s -X POST http://{{admin}}/purge -d '{{\"tag\":\"products\",\"soft\":true}}'  # soft purge by surrogate key\n  \
         open http://{{admin}}/ for the status page; http://{{admin}}/metrics for Prometheus\n\nCtrl-C stops."
    );
    let again = config.clone();
    let load: Loader = Arc::new(move || Ok(again.clone()));
    run_until_signal(rt, config, load, None, Some(banner))
}

/// The checkout this binary was built from (for samples and examples), else the working dir.
fn repo_root() -> anyhow::Result<PathBuf> {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for candidate in [std::env::current_dir()?, built] {
        if candidate.join("samples").join("site").is_dir()
            && candidate.join("guest-examples").is_dir()
        {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "run `tessera demo` from the Tessera repository (samples/ and guest-examples/ not found)"
    )
}
