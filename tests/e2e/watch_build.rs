//! `serve --watch` with a script named by its crate directory: built at start, rebuilt and
//! swapped in when a source file changes, with a `reloaded <script> in N ms` line; a change
//! that does not compile leaves the running version serving.

use std::time::Duration;

use crate::support::{repo, send, Launch, Origin, Reply, PATIENCE};

/// The test suite's target directory for guests, where the SDK is compiled for wasm.
fn guest_target() -> std::path::PathBuf {
    repo().join("target").join("test-guests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crate_script_is_rebuilt_and_swapped_when_its_source_changes() {
    let origin =
        Origin::start(|_, _| Reply::ok("page").header("cache-control", "max-age=600")).await;
    let launch = Launch::config(
        &origin,
        "[[site]]\nname = \"shop\"\nhosts = [\"shop.test\"]\norigin = \"{origin}\"\nscript = \"watch-probe\"\n",
    )
    .arg("--watch")
    .capture_logs()
    // The crate builds in the test suite's guest target directory, where the SDK and its
    // dependencies are already compiled for wasm.
    .env(
        "CARGO_TARGET_DIR",
        &guest_target().display().to_string(),
    );
    let dir = launch.config_path().parent().unwrap().to_owned();
    let krate = tessera::scaffold::new_guest(&dir, "watch-probe", None).unwrap();
    std::fs::copy(repo().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    // Built once before the start, so that the start (bounded in time) only finds it built
    // even where the SDK's dependencies were not compiled yet.
    tessera::builder::build_guest(&krate, None, Some(&guest_target())).unwrap();
    let proxy = launch.start().await;

    let get = || send(proxy.addr, "GET", "/p", &[("host", "shop.test")]);
    assert_eq!(get().await.h("x-cache"), "MISS");
    assert_eq!(get().await.h("x-cache"), "HIT");
    assert_eq!(origin.count(), 1);

    // A change that does not compile: refused, the running build keeps its entries.
    let lib = krate.join("src").join("lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, source.replace("fn cache_key", "fn cache_key(")).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    while !proxy.logs().iter().any(|l| l.contains("refused")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken build was never tried"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get().await.h("x-cache"), "HIT");

    // A change of the key: rebuilt, swapped, and the new key is a new entry.
    let changed = source.replace(
        r#"format!("{default_key}#{}", req.client.device)"#,
        r#"format!("{default_key}#v2-{}", req.client.device)"#,
    );
    assert_ne!(changed, source, "the scaffold's key line moved");
    std::fs::write(&lib, changed).unwrap();
    while !proxy
        .logs()
        .iter()
        .any(|l| l.contains("reloaded watch-probe in ") && l.contains(" ms"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never rebuilt: {:?}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get().await.h("x-cache"), "MISS");
    assert_eq!(get().await.h("x-cache"), "HIT");
    assert_eq!(origin.count(), 2);
}

#[test]
fn a_script_directory_that_is_not_a_crate_or_does_not_build_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let krate = tessera::scaffold::new_guest(dir.path(), "broken-probe", None).unwrap();
    std::fs::copy(repo().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    // Its dependencies compiled first (see above), then the crate itself broken.
    tessera::builder::build_guest(&krate, None, Some(&guest_target())).unwrap();
    std::fs::write(krate.join("src").join("lib.rs"), "this is not rust").unwrap();
    for (script, words) in [
        ("empty", "directory without Cargo.toml"),
        ("broken-probe", "crate"),
    ] {
        let path = dir.path().join("tessera.toml");
        std::fs::write(
            &path,
            format!(
                "[[site]]\nname = \"s\"\norigin = \"http://127.0.0.1:9\"\nscript = \"{script}\"\n"
            ),
        )
        .unwrap();
        let (ok, out) = crate::support::run_cli_env(
            &["check", "--config", &path.display().to_string()],
            &[("CARGO_TARGET_DIR", &guest_target().display().to_string())],
        );
        assert!(!ok, "{out}");
        for w in [words, "tessera.toml:4", "key `script`", script] {
            assert!(out.contains(w), "{script}: `{w}` missing in {out}");
        }
    }
}
