//! `tessera test [PATH…]`: runs test files (`*.test.toml`) against their sample pages and
//! prints results the way `cargo test` does; a non-zero exit when any fails.

use std::path::PathBuf;

/// Arguments of `tessera test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Test files, or folders searched for `*.test.toml` (default: the current folder).
    pub paths: Vec<PathBuf>,
}

/// Runs the tests; `Ok(false)` when any failed.
pub fn run(args: TestArgs) -> anyhow::Result<bool> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths
    };
    let files = tessera::testing::find(&paths);
    anyhow::ensure!(
        !files.is_empty(),
        "no test files (*.test.toml) found in {paths:?}"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "\nrunning {} test file{}",
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
    let results = rt.block_on(tessera::testing::run(&files));
    let mut failed = Vec::new();
    for r in &results {
        let ok = r.failure.is_none();
        println!(
            "test {} ... {} ({} step{})",
            r.file.display(),
            if ok { "ok" } else { "FAILED" },
            r.steps,
            if r.steps == 1 { "" } else { "s" }
        );
        if let Some(f) = &r.failure {
            failed.push((r.file.clone(), f.clone()));
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:\n");
        for (file, why) in &failed {
            println!("---- {} ----\n{why}\n", file.display());
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        results.len() - failed.len(),
        failed.len()
    );
    Ok(failed.is_empty())
}
