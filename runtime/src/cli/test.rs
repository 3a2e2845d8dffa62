//! `tessera test [PATH…]`: runs test files (`*.test.toml`) against their sample pages and
//! prints results the way `cargo test` does; a non-zero exit when any fails.

use std::path::PathBuf;

/// Arguments of `tessera test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Test files, or folders searched for `*.test.toml` (default: the current folder).
    pub paths: Vec<PathBuf>,
    /// Also write the results as JUnit XML to this file (for CI).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write every `body_snapshot` file from what the body is now, instead of comparing.
    #[arg(long)]
    pub update_snapshots: bool,
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
    let started = std::time::Instant::now();
    let results = rt.block_on(tessera::testing::run(&files, args.update_snapshots));
    if let Some(path) = &args.junit {
        junit(&results, started.elapsed(), path)?;
    }
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

/// The results as a JUnit report: one suite, a test case per file.
fn junit(
    results: &[tessera::testing::FileResult],
    took: std::time::Duration,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new("tessera test");
    for r in results {
        let status = match &r.failure {
            None => TestCaseStatus::success(),
            Some(why) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(why.lines().next().unwrap_or_default())
                    .set_description(why.as_str());
                s
            }
        };
        let mut case = TestCase::new(r.file.display().to_string(), status);
        case.set_time(r.took);
        suite.add_test_case(case);
    }
    suite.set_time(took);
    let mut report = Report::new("tessera");
    report.add_test_suite(suite);
    let xml = report
        .to_string()
        .map_err(|e| anyhow::anyhow!("--junit: {e}"))?;
    std::fs::write(path, xml).map_err(|e| anyhow::anyhow!("--junit {}: {e}", path.display()))
}
