//! `tessera new NAME`: a guest crate to start from (manifest, a commented script with a
//! native unit test, a `tessera.toml` naming its build), so that `cargo new` is not step one.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where the SDK is, as a path the new crate's manifest can use: `sdk` if given, else the
/// SDK of the source tree this binary was built from.
fn sdk_path(sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    let sdk = match sdk {
        Some(p) => p.to_owned(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("sdk"),
    };
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("--sdk: no tessera-sdk at {}", sdk.display()))?;
    anyhow::ensure!(
        sdk.join("Cargo.toml").is_file(),
        "--sdk: {} has no Cargo.toml",
        sdk.display()
    );
    Ok(sdk)
}

/// A crate name cargo accepts and a file name that is the same on every system.
fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Creates the crate in `dir/name`; the directory must not exist.
pub fn new_guest(dir: &Path, name: &str, sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        valid_name(name),
        "`{name}`: a script name is lower-case letters, digits, - and _, starting with a letter"
    );
    let root = dir.join(name);
    anyhow::ensure!(!root.exists(), "{} already exists", root.display());
    let sdk = sdk_path(sdk)?;
    let ty = name
        .split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<String>();
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        (
            "src/lib.rs",
            LIB_RS.replace("NAME", name).replace("TYPE", &ty),
        ),
        ("tessera.toml", TESSERA_TOML.replace("NAME", name)),
        (".gitignore", "/target\n*.wasm\n".to_owned()),
    ];
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the crate"))
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(root)
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    let msrv = env!("CARGO_PKG_RUST_VERSION");
    // A TOML basic string: backslashes and quotes escaped.
    let sdk = sdk
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
rust-version = "{msrv}"
publish = false

# Built alone, wherever it lives (even inside another workspace); dependencies are chosen
# for the Rust version above.
[workspace]
resolver = "3"

[lib]
# cdylib: the WebAssembly component; rlib: the native unit tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
tessera-sdk = {{ path = "{sdk}" }}
"#
    )
}

const CARGO_CONFIG: &str = r#"# `cargo build --target wasm32-unknown-unknown` makes a component with no WASI imports.
# (`tessera build` passes the same linker, so this is only for plain cargo.)
[target.wasm32-unknown-unknown]
linker = "wasm-component-ld"
"#;

const TESSERA_TOML: &str = r#"# Tessera in front of an origin on 127.0.0.1:9000, running this script.
#   tessera build . -o NAME.wasm
#   tessera check --config tessera.toml
#   tessera key --config tessera.toml 'http://localhost/p?utm_source=x&id=1'
#   tessera serve --config tessera.toml          # then: curl -i http://127.0.0.1:8080/
listen = "127.0.0.1:8080"

[[site]]
name = "NAME"
hosts = ["localhost", "127.0.0.1"]
origin = "http://127.0.0.1:9000"
script = "NAME.wasm"
"#;

const LIB_RS: &str = r#"//! NAME: a Tessera edge script.
//!
//! The proxy calls the hooks this type implements on every request, each in a fresh sandbox:
//! keep them pure and quick (a script's time budget is `cpu_ms` per request). Hooks left out
//! keep the host's behaviour. Try it:
//!
//! ```text
//! cargo test                            # the native unit tests below
//! tessera build . -o NAME.wasm          # the component
//! tessera key --config tessera.toml 'http://localhost/p?b=2&utm_source=x&a=1'
//! ```

use tessera_sdk::{CacheDecision, EdgeScript, Request, ResponseHead};

/// The script.
pub struct TYPE;

#[tessera_sdk::script]
impl EdgeScript for TYPE {
    // fn on_request(req: &Request) -> RequestAction — answer at the edge, or edit the request.

    /// The cache key: the host's default (tracking parameters dropped, query sorted) plus the
    /// device class, so phones and desktops get their own copies.
    fn cache_key(req: &Request, default_key: &str) -> String {
        format!("{default_key}#{}", req.client.device)
    }

    /// How long a response stays fresh: what the origin said, but never more than a day, and
    /// never for anything under /account.
    fn cache_policy(req: &Request, _resp: &ResponseHead, proposed: CacheDecision) -> CacheDecision {
        if req.path.starts_with("/account") {
            return proposed.no_store();
        }
        let ttl = proposed.ttl.min(24 * 60 * 60);
        proposed.with_ttl(ttl)
    }

    // fn on_response(req: &Request, resp: &ResponseHead) -> HeaderEdits — edit the client's headers.
    // fn html_handlers(...) — rewrite HTML as it streams (see guest-examples/personalize).
}

#[cfg(test)]
mod tests {
    use super::TYPE;
    use tessera_sdk::testing::{call_cache_key, call_cache_policy, request, response};
    use tessera_sdk::{CacheDecision, DeviceClass};

    #[test]
    fn phones_and_desktops_get_their_own_keys() {
        let phone = request("/p").device(DeviceClass::Mobile).build();
        assert_eq!(call_cache_key::<TYPE>(&phone, "example.com/p"), "example.com/p#mobile");
        let desktop = request("/p").build();
        assert_eq!(call_cache_key::<TYPE>(&desktop, "example.com/p"), "example.com/p#desktop");
    }

    #[test]
    fn account_pages_are_never_stored_and_others_at_most_a_day() {
        let resp = response(200).build();
        let week = CacheDecision::cache_for(7 * 24 * 60 * 60);
        let account = call_cache_policy::<TYPE>(&request("/account/orders").build(), &resp, &week);
        assert!(!account.store);
        let page = call_cache_policy::<TYPE>(&request("/p").build(), &resp, &week);
        assert_eq!((page.store, page.ttl), (true, 24 * 60 * 60));
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_are_plain_crate_names() {
        for good in ["geo-key", "a", "jwt_gate2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Geo", "1st", "../x", "a b", "a/b", "-x", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
