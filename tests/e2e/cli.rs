//! The command line: `check` and `serve` on bad configs and bad wasm files.

use crate::support::{guest, run_cli};

#[test]
fn check_names_file_line_and_key_of_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n[[site]]\nname = \"shop\"\norigin = \"http://127.0.0.1:9\"\nttl = 5\n").unwrap();
    let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("bad.toml:5:") && out.contains("ttl"), "{out}");
}

#[test]
fn check_accepts_a_good_config_and_instantiates_its_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.toml");
    let script = guest("guest-examples/normalize-key");
    std::fs::write(
        &path,
        format!(
            "[[site]]\nname = \"shop\"\norigin = \"http://127.0.0.1:9\"\nscript = \"{}\"\n",
            script.display()
        ),
    )
    .unwrap();
    let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("ok (1 site(s), 1 script(s))"), "{out}");
}

fn check_script(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("broken.wasm");
    std::fs::write(&wasm, bytes).unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        "[[site]]\nname = \"s\"\norigin = \"http://127.0.0.1:9\"\nscript = \"broken.wasm\"\n",
    )
    .unwrap();
    let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    let (ok, serve_out) = run_cli(&[
        "serve",
        "--origin",
        "http://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--script",
        wasm.to_str().unwrap(),
    ]);
    assert!(!ok, "serve must refuse the script: {serve_out}");
    assert!(serve_out.contains("broken.wasm"), "{serve_out}");
    out
}

#[test]
fn a_core_module_is_refused_with_the_file_named() {
    // The smallest valid core module: magic and version 1, no sections.
    let out = check_script(&[0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
    assert!(
        out.contains("broken.wasm") && out.contains("core module"),
        "{out}"
    );
}

#[test]
fn garbage_is_refused_with_the_file_named() {
    let out = check_script(b"#!/bin/sh\necho not wasm\n");
    assert!(
        out.contains("broken.wasm") && out.contains("not a WebAssembly file"),
        "{out}"
    );
}

#[test]
fn a_truncated_component_is_refused_with_the_file_named() {
    let good = std::fs::read(guest("guest-examples/bot-block")).unwrap();
    let out = check_script(&good[..good.len() / 2]);
    assert!(
        out.contains("broken.wasm") && out.contains("invalid component"),
        "{out}"
    );
}

#[test]
fn compiled_components_are_kept_on_disk_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    let script = guest("guest-examples/bot-block");
    std::fs::write(
        &path,
        format!("compiled_dir = \"compiled\"\n[[site]]\nname = \"s\"\norigin = \"http://127.0.0.1:9\"\nscript = \"{}\"\n", script.display()),
    )
    .unwrap();
    let cwasm = || -> Vec<_> {
        std::fs::read_dir(dir.path().join("compiled"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    assert!(cwasm().is_empty());
    for _ in 0..2 {
        let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        assert!(ok, "{out}");
        let files = cwasm();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].to_str().unwrap().ends_with(".cwasm"));
    }
}
