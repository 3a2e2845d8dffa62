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

/// A component exporting both interfaces with every function name of the world, each
/// `func(x: u32) -> u32` — or only the hooks interface when `html` is false.
fn impostor(html: bool) -> Vec<u8> {
    let names = |list: &[&str]| {
        list.iter()
            .map(|n| format!("(export \"{n}\" (func $f))"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let hooks = names(&[
        "describe",
        "on-request",
        "cache-key",
        "cache-policy",
        "on-response",
        "html-handlers",
    ]);
    let html_iface = names(&[
        "on-element",
        "on-element-end",
        "on-text",
        "on-comment",
        "on-document-end",
    ]);
    let html_export = if html {
        format!(
            "(instance $html {html_iface}) (export \"tessera:edge/html@0.5.0\" (instance $html))"
        )
    } else {
        String::new()
    };
    wat::parse_str(format!(
        r#"(component
            (core module $m (func (export "f") (param i32) (result i32) local.get 0))
            (core instance $i (instantiate $m))
            (func $f (param "x" u32) (result u32) (canon lift (core func $i "f")))
            (instance $hooks {hooks})
            (export "tessera:edge/hooks@0.5.0" (instance $hooks))
            {html_export})"#
    ))
    .expect("valid component text")
}

#[test]
fn a_component_that_only_looks_like_a_script_is_refused_by_export() {
    // Every name is there, with the wrong types: refused when loaded, never called.
    let out = check_script(&impostor(true));
    assert!(
        out.contains("broken.wasm") && out.contains("export describe"),
        "{out}"
    );
    let out = check_script(&impostor(false));
    assert!(
        out.contains("broken.wasm") && out.contains("no export tessera:edge/html@0.5.0"),
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

#[test]
fn script_config_secrets_that_cannot_be_read_safely_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let open_key = dir.path().join("open.key");
    std::fs::write(&open_key, "s3cret\n").unwrap();
    std::fs::set_permissions(
        &open_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let site = "[[site]]\nname = \"s\"\norigin = \"http://127.0.0.1:9\"\n[site.script_config]\n";
    for (entry, says) in [
        (
            "k = { env = \"TESSERA_TEST_SURELY_UNSET\" }",
            "key `script_config.k`: environment variable TESSERA_TEST_SURELY_UNSET is not set",
        ),
        (
            "k = { file = \"open.key\" }",
            "readable by group or others: chmod 600",
        ),
        ("k = { file = \"missing.key\" }", "missing.key"),
        ("\"bad name\" = \"x\"", "names are 1 to 64 letters"),
        (
            "k = 5",
            "key `script_config.k`: expected a string, { env = \"NAME\" } or { file = \"path\" }",
        ),
    ] {
        let path = dir.path().join("t.toml");
        std::fs::write(&path, format!("{site}{entry}\n")).unwrap();
        let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        assert!(!ok, "{entry}: accepted");
        assert!(
            out.contains("t.toml:5"),
            "{entry}: no file and line in {out}"
        );
        assert!(out.contains(says), "{entry}: wanted `{says}` in {out}");
        assert!(
            !out.contains("s3cret"),
            "a secret never reaches the output: {out}"
        );
    }
}

#[test]
fn a_geoip_database_is_checked_and_used_by_tessera_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("country.mmdb");
    let doc = std::net::Ipv4Addr::new(192, 0, 2, 0);
    std::fs::write(&db, crate::support::mmdb::country_db(&[(doc, 24, "US")])).unwrap();
    let path = dir.path().join("t.toml");
    let script = guest("guest-examples/geo-key");
    let write = |db: &str| {
        std::fs::write(
            &path,
            format!("[server]\ngeoip_db = \"{db}\"\n[[site]]\nname = \"s\"\nhosts = [\"shop.test\"]\norigin = \"http://127.0.0.1:9\"\nscript = \"{}\"\n", script.display()),
        )
        .unwrap();
    };
    write("country.mmdb");
    let key = |ip: &str| {
        let (ok, out) = run_cli(&[
            "key",
            "--config",
            path.to_str().unwrap(),
            "http://shop.test/p",
            "--client-ip",
            ip,
        ]);
        assert!(ok, "{out}");
        out.lines()
            .find(|l| l.starts_with("key "))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(key("192.0.2.7").contains("na"), "{}", key("192.0.2.7"));
    assert!(
        key("198.51.100.1").contains("row"),
        "{}",
        key("198.51.100.1")
    );

    std::fs::write(dir.path().join("junk.mmdb"), "not a database").unwrap();
    for (file, says) in [
        ("junk.mmdb", "not a MaxMind DB file"),
        ("missing.mmdb", "missing.mmdb"),
    ] {
        write(file);
        let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        assert!(!ok, "{file}: accepted");
        assert!(
            out.contains("t.toml:2") && out.contains("key `server.geoip_db`") && out.contains(says),
            "{out}"
        );
    }
}

#[test]
fn a_secret_that_is_a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("key");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        "[[site]]\nname = \"s\"\norigin = \"http://127.0.0.1:9\"\n[site.script_config]\nk = { file = \"key\" }\n",
    )
    .unwrap();
    let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(!ok && out.contains("is not a regular file"), "{out}");
}
