//! `tessera new` through the real binary: the crate it makes passes its own tests, builds
//! into a script `check` accepts, and keys requests as its comments say.

use std::process::Command;

use crate::support::{repo, run_cli};

fn tessera_in(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn a_new_script_tests_builds_checks_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = tessera_in(dir.path(), &["new", "my-script"]);
    assert!(ok, "{out}");
    let root = dir.path().join("my-script");
    for f in [
        "Cargo.toml",
        ".cargo/config.toml",
        "src/lib.rs",
        "tessera.toml",
    ] {
        assert!(root.join(f).is_file(), "{f} missing");
    }
    // Never over an existing directory; names cargo would refuse are refused first.
    let (ok, out) = tessera_in(dir.path(), &["new", "my-script"]);
    assert!(!ok && out.contains("already exists"), "{out}");
    for bad in ["My-Script", "../escape", "1st"] {
        let (ok, out) = tessera_in(dir.path(), &["new", bad]);
        assert!(!ok && out.contains("script name"), "{bad}: {out}");
    }
    assert!(!dir.path().join("escape").exists());

    // The workspace's lock pins the SDK's dependencies: the same versions as the examples.
    std::fs::copy(repo().join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    let tests = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--quiet", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .env(
            "CARGO_TARGET_DIR",
            repo().join("target").join("scaffold-native"),
        )
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&tests.stdout).into_owned()
        + &String::from_utf8_lossy(&tests.stderr);
    assert!(tests.status.success(), "{report}");
    assert!(report.contains("2 passed"), "{report}");

    // What `tessera build` does, with the test suite's shared target directory.
    let target = repo().join("target").join("test-guests");
    tessera::builder::build_guest(&root, Some(&root.join("my-script.wasm")), Some(&target))
        .expect("the new crate builds");
    let config = root.join("tessera.toml").display().to_string();
    let (ok, out) = run_cli(&["check", "--config", &config]);
    assert!(ok && out.contains("hooks cache-key, cache-policy"), "{out}");
    let (ok, out) = run_cli(&[
        "key",
        "--config",
        &config,
        "http://localhost/p?b=2&utm_source=x&a=1",
        "-H",
        "User-Agent: Mozilla/5.0 (iPhone) Mobile",
    ]);
    assert!(ok && out.contains("localhost/p?a=1&b=2#mobile"), "{out}");
}
