//! The `tessera` command line: serve, check, build and demo.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tessera::config::{Config, Site, DEFAULT_LISTEN};
use tessera::guest::{GuestEngine, PoolSize, Script};

/// A caching reverse proxy scripted by sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy from a config file, or in front of one origin (quick start).
    Serve {
        /// Path to tessera.toml.
        #[arg(long, short, conflicts_with = "origin")]
        config: Option<PathBuf>,
        /// Origin URL for the quick start, e.g. http://127.0.0.1:9000.
        #[arg(long, required_unless_present = "config")]
        origin: Option<String>,
        /// Script(s) for the quick start, run in the order given.
        #[arg(long)]
        script: Vec<PathBuf>,
        /// Address to listen on (overrides the config).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate a config, load and instantiate every script; non-zero exit lists the errors.
    Check {
        /// Path to tessera.toml.
        #[arg(long, short)]
        config: PathBuf,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve {
            config,
            origin,
            script,
            listen,
        } => serve(config, origin, script, listen),
        Cmd::Check { config } => check(&config),
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(
    config: Option<PathBuf>,
    origin: Option<String>,
    scripts: Vec<PathBuf>,
    listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let mut config = match (config, origin) {
        (Some(path), _) => Config::load(&path)?,
        (None, Some(origin)) => {
            let uri: http::Uri = origin
                .parse()
                .with_context(|| format!("--origin: `{origin}` is not a URL"))?;
            anyhow::ensure!(
                uri.scheme_str() == Some("http") && uri.host().is_some(),
                "--origin: `{origin}` must be an http:// URL with a host"
            );
            for s in &scripts {
                anyhow::ensure!(s.is_file(), "--script: file {} not found", s.display());
            }
            Config::quick(DEFAULT_LISTEN.parse()?, Site::quick(uri, scripts))
        }
        (None, None) => anyhow::bail!("give --config FILE or --origin URL"),
    };
    if let Some(l) = listen {
        config.listen = l;
    }
    run_until_signal(runtime()?, config, None)
}

fn run_until_signal(
    rt: tokio::runtime::Runtime,
    config: Config,
    banner: Option<String>,
) -> anyhow::Result<()> {
    let shared = tessera::proxy::build(config)?;
    rt.block_on(async move {
        let running = tessera::proxy::serve(shared).await?;
        println!("tessera listening on http://{}", running.addr);
        if let Some(b) = banner {
            println!("{}", b.replace("{addr}", &running.addr.to_string()));
        }
        tokio::signal::ctrl_c().await?;
        eprintln!("shutting down");
        running.shutdown().await;
        Ok(())
    })
}

fn check(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let max_memory = config
        .sites
        .iter()
        .map(|s| s.limits.memory_bytes)
        .max()
        .unwrap_or(0);
    let engine = GuestEngine::new(PoolSize {
        instances: 8,
        max_memory,
    })?;
    let mut errors = Vec::new();
    let mut scripts = 0;
    for site in &config.sites {
        for script in &site.scripts {
            match Script::load(
                &engine,
                script,
                &config.compiled_dir,
                &site.name,
                site.limits,
            ) {
                Err(e) => errors.push(format!("site \"{}\": {e}", site.name)),
                Ok(s) => match Arc::new(s).smoke_test() {
                    Err(e) => {
                        errors.push(format!("site \"{}\": {}: {e}", site.name, script.display()))
                    }
                    Ok(()) => scripts += 1,
                },
            }
        }
    }
    if errors.is_empty() {
        println!(
            "{}: ok ({} site(s), {} script(s))",
            path.display(),
            config.sites.len(),
            scripts
        );
        Ok(())
    } else {
        for e in &errors {
            eprintln!("error: {e}");
        }
        anyhow::bail!("{}: {} error(s)", path.display(), errors.len())
    }
}

fn demo(listen: SocketAddr) -> anyhow::Result<()> {
    let root = repo_root()?;
    let out = root.join("target").join("demo");
    let mut scripts = Vec::new();
    for name in ["normalize-key", "ttl-by-type"] {
        eprintln!("building guest-examples/{name}…");
        let wasm = tessera::builder::build_guest(
            &root.join("guest-examples").join(name),
            Some(&out.join(format!("{name}.wasm"))),
            None,
        )?;
        scripts.push(wasm);
    }
    let rt = runtime()?;
    let origin = rt.block_on(tessera::demo::start_sample_origin(
        root.join("samples").join("site"),
        "127.0.0.1:0".parse()?,
    ))?;
    let mut site = Site::quick(format!("http://{origin}").parse()?, scripts);
    site.name = "demo".into();
    let mut config = Config::quick(listen, site);
    config.node_name = "demo-edge".into();
    let banner = format!(
        "sample origin on http://{origin} (serving samples/site)\n\ntry:\n  \
         curl -i http://{{addr}}/products/123                       # miss, then hit: see Cache-Status\n  \
         curl -i 'http://{{addr}}/products/123?utm_source=mail&fbclid=x'  # a hit: tracking params are not in the key\n  \
         curl -i -A 'Mozilla/5.0 (iPhone) Mobile' http://{{addr}}/products/123  # separate mobile entry\n  \
         curl -i http://{{addr}}/api/products/123                   # JSON: ttl 300, stale-while-revalidate 3600\n  \
         curl -sI http://{{addr}}/images/logo.png                   # image: ttl 30 days\n  \
         curl -i http://{{addr}}/cart                               # never stored\n\nCtrl-C stops."
    );
    run_until_signal(rt, config, Some(banner))
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
