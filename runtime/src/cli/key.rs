//! `tessera key`: how a site's scripts key a request, computed offline by the real recv and
//! hash phases (no cache, no origin, no network).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use tessera::clock::Clock;
use tessera::config::Config;

/// What the command was asked.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["config", "scripts"])))]
pub struct KeyArgs {
    /// Path to tessera.toml.
    #[arg(long, short, conflicts_with = "scripts")]
    pub config: Option<PathBuf>,
    /// Script(s) of a one-site config, run in the order given.
    #[arg(long = "script")]
    pub scripts: Vec<PathBuf>,
    /// The request's absolute URL, e.g. https://shop.example/p?utm_source=x&id=1.
    pub url: String,
    /// Method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// A request field, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The `Cookie` field.
    #[arg(long)]
    pub cookie: Option<String>,
    /// The client's address as scripts see it.
    #[arg(long, default_value = "127.0.0.1")]
    pub client_ip: IpAddr,
    /// Show each step of the default key's normalisation.
    #[arg(long)]
    pub explain: bool,
}

/// Runs the command and prints the report.
pub fn run(args: KeyArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        // clap requires --config or at least one --script.
        // The origin is never contacted: only the recv and hash phases run.
        None => super::offline_config(&args.scripts)?,
    };
    let uri: http::Uri = args
        .url
        .parse()
        .with_context(|| format!("`{}` is not a URL", args.url))?;
    anyhow::ensure!(
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some(),
        "`{}`: give an absolute http:// or https:// URL",
        args.url
    );
    let method = http::Method::from_bytes(args.method.as_bytes())
        .with_context(|| format!("-X: `{}` is not a method", args.method))?;
    let mut req = http::Request::builder().method(method).uri(uri.clone());
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("-H `{h}`: expected `Name: value`"))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("-H `{h}`: `{}` is not a field name", name.trim()))?;
        let value = http::HeaderValue::from_str(value.trim())
            .with_context(|| format!("-H `{h}`: the value is not a valid field value"))?;
        req = req.header(name, value);
    }
    if let Some(c) = &args.cookie {
        let value = http::HeaderValue::from_str(c).context("--cookie: not a valid field value")?;
        req = req.header(http::header::COOKIE, value);
    }
    let req = req.body(()).context("cannot build the request")?;
    let host = uri.host().unwrap_or_default().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Offline: the disk tier (which a running server holds) is neither read nor locked.
    let mut config = config;
    config.cache.disk = None;
    let report = rt.block_on(async {
        let shared = tessera::proxy::build(config, Clock::system()).await?;
        anyhow::Ok(tessera::proxy::explain(shared, req, SocketAddr::new(args.client_ip, 0)).await)
    })?;
    let report = report.with_context(|| format!("no site serves host `{host}`"))?;
    println!("site          {}", report.site);
    println!("device class  {}", report.device);
    let hooks = if report.hooks.is_empty() {
        "none".to_owned()
    } else {
        report.hooks.join(", ")
    };
    println!("hooks run     {hooks}");
    if !report.default_key.is_empty() {
        if args.explain {
            for step in &report.steps {
                println!("  · {step}");
            }
        }
        println!("default key   {}", report.default_key);
    }
    if let Some(key) = &report.key {
        println!("key           {key}");
        let q = match &report.origin_query {
            None => "unchanged".to_owned(),
            Some(None) => "none (no parameter of it is in the key)".to_owned(),
            Some(Some(q)) => format!("{q} (parameters not in the key are not sent)"),
        };
        println!("origin query  {q}");
    }
    println!("outcome       {}", report.outcome);
    Ok(())
}
