//! `tessera simulate` and `tessera gen-log`: an access log replayed through a site's
//! scripts and a simulated cache, and sample logs to try it on.

use std::io::{BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use tessera::config::{parse_size, Config};
use tessera::simulate::genlog::{self, LogFormat};
use tessera::simulate::{self, Options, Simulation};

/// What `simulate` was asked.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["config", "scripts"])))]
pub struct SimulateArgs {
    /// Path to tessera.toml.
    #[arg(long, short, conflicts_with = "scripts")]
    pub config: Option<PathBuf>,
    /// Script(s) of a one-site config, run in the order given.
    #[arg(long = "script")]
    pub scripts: Vec<PathBuf>,
    /// The access log: Common/Combined Log Format or JSON lines (`-`: standard input).
    #[arg(long)]
    pub log: PathBuf,
    /// Cache size, e.g. 512MiB (default: the config's `cache.max_size`).
    #[arg(long)]
    pub cache_size: Option<String>,
    /// Another script to compare side by side (`none`: no script at all).
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// A header of every made-up origin response, `Name: value` (repeatable; replaces the
    /// default `Cache-Control: max-age=300`).
    #[arg(short = 'H', long = "response-header")]
    pub response_headers: Vec<String>,
    /// Host of log lines that recorded none (default: the config's first host).
    #[arg(long)]
    pub host: Option<String>,
    /// How many top keys to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `gen-log` was asked.
#[derive(clap::Args)]
pub struct GenLogArgs {
    /// Lines to write.
    #[arg(long, default_value_t = 100_000)]
    pub lines: u64,
    /// Seed (the same seed writes the same log).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Hours of traffic the lines span.
    #[arg(long, default_value_t = 24.0)]
    pub hours: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Combined)]
    pub format: LogFormat,
    /// Host recorded in JSON lines.
    #[arg(long, default_value = "shop.example")]
    pub host: String,
    /// Write here instead of standard output.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
}

fn label(config: &Config) -> String {
    let names: Vec<String> = config
        .sites
        .iter()
        .flat_map(|s| &s.scripts)
        .map(|p| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect();
    if names.is_empty() {
        "no script".to_owned()
    } else {
        names.join(" + ")
    }
}

fn options(args: &SimulateArgs) -> anyhow::Result<Options> {
    let mut opts = Options {
        host: args.host.clone(),
        top: args.top,
        ..Options::default()
    };
    if let Some(s) = &args.cache_size {
        let bytes = parse_size(s).with_context(|| format!("--cache-size: `{s}` is not a size"))?;
        anyhow::ensure!(bytes > 0, "--cache-size: must be more than 0");
        opts.cache_bytes = Some(bytes);
    }
    if !args.response_headers.is_empty() {
        let mut h = HeaderMap::new();
        for raw in &args.response_headers {
            let (n, v) = raw
                .split_once(':')
                .with_context(|| format!("-H `{raw}`: expected `Name: value`"))?;
            let name = HeaderName::from_bytes(n.trim().as_bytes())
                .with_context(|| format!("-H `{raw}`: `{}` is not a field name", n.trim()))?;
            let value = HeaderValue::from_str(v.trim())
                .with_context(|| format!("-H `{raw}`: not a valid field value"))?;
            h.append(name, value);
        }
        opts.response_headers = h;
    }
    Ok(opts)
}

/// Runs `simulate` and prints the report.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let opts = options(&args)?;
    let base = match &args.config {
        Some(path) => Config::load(path)?,
        None => super::offline_config(&args.scripts)?,
    };
    let mut configs = vec![base.clone()];
    if let Some(other) = &args.against {
        let scripts = if other.as_os_str() == "none" {
            Vec::new()
        } else {
            anyhow::ensure!(other.is_file(), "--against: {} not found", other.display());
            vec![other.clone()]
        };
        let mut b = base;
        for site in &mut b.sites {
            site.scripts = scripts.clone();
            site.script_crates.clear();
        }
        configs.push(b);
    }
    let (reader, total): (Box<dyn std::io::BufRead>, Option<u64>) = if args.log.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = std::fs::File::open(&args.log)
            .with_context(|| format!("--log {}: cannot open", args.log.display()))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(BufReader::with_capacity(1 << 16, f)), len)
    };
    let bar = progress(total);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (summary, reports) = rt.block_on(async {
        let mut sims = Vec::new();
        for c in configs {
            let l = label(&c);
            sims.push(Simulation::new(c, &opts, l).await?);
        }
        let summary = simulate::run(reader, &mut sims, |n| bar.set_position(n))
            .await
            .with_context(|| format!("--log {}: read failed", args.log.display()))?;
        anyhow::Ok((
            summary,
            sims.iter().map(Simulation::report).collect::<Vec<_>>(),
        ))
    })?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({ "log": summary, "simulations": reports });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        write!(out, "{}", simulate::render_text(&summary, &reports))?;
    }
    anyhow::ensure!(
        summary.requests > 0,
        "--log {}: no request could be read",
        args.log.display()
    );
    Ok(())
}

/// A cargo-style progress bar on a terminal; nothing when standard error is not one.
fn progress(total: Option<u64>) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:>12.cyan.bold} [{bar:27}] {bytes}/{total_bytes} {msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix("Simulating");
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Runs `gen-log`.
pub fn gen_log(args: GenLogArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.hours.is_finite() && args.hours > 0.0 && args.hours <= 24.0 * 366.0,
        "--hours: between 0 and a year"
    );
    let spec = genlog::Spec {
        lines: args.lines,
        seed: args.seed,
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200),
        span: Duration::from_secs_f64(args.hours * 3600.0),
        host: args.host,
        format: args.format,
    };
    let written = match &args.out {
        Some(path) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("--out {}: cannot create", path.display()))?;
            genlog::generate(&spec, &mut std::io::BufWriter::new(f))
        }
        None => genlog::generate(
            &spec,
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        ),
    };
    match written {
        // `gen-log | head` stops reading early: that is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write the log"),
    }
}
