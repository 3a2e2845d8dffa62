//! `[site.script_config]`: named values a site's scripts read with `config::get`, literal
//! or secret (from an environment variable or a file, read at every load and reload).

use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;

use super::units::Errors;
use super::ConfigError;

/// Most values one site may give its scripts.
pub const MAX_ENTRIES: usize = 64;
/// Longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;

/// One value as written in the file: a string, `{ env = "NAME" }` or `{ file = "path" }`.
pub(super) type RawValue = toml::Value;

/// The values, by name. Its `Debug` never shows them: secrets stay out of logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ScriptConfig(BTreeMap<String, String>);

impl ScriptConfig {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A config of these pairs (tests and offline commands).
    pub fn of<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> ScriptConfig {
        ScriptConfig(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

impl std::fmt::Debug for ScriptConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Reads the table; `key` names a key of this site in errors.
pub(super) fn script_config(
    raw: Option<Spanned<BTreeMap<String, Spanned<RawValue>>>>,
    base: &Path,
    key: &dyn Fn(&str) -> String,
    e: &Errors,
) -> Result<ScriptConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(ScriptConfig::default());
    };
    let span = raw.span();
    let table = raw.into_inner();
    if table.len() > MAX_ENTRIES {
        return Err(e.at(
            Some(span),
            format!("{}: at most {MAX_ENTRIES} values", key("script_config")),
        ));
    }
    let mut out = BTreeMap::new();
    for (name, v) in table {
        let at = Some(v.span());
        let k = key(&format!("script_config.{name}"));
        if !valid_name(&name) {
            return Err(e.at(
                at,
                format!("{k}: names are 1 to 64 letters, digits, `_`, `-` or `.`"),
            ));
        }
        let one = |t: &toml::Table, name: &str| match (t.len(), t.get(name)) {
            (1, Some(toml::Value::String(s))) => Some(s.clone()),
            _ => None,
        };
        let value = match v.into_inner() {
            toml::Value::String(t) => t,
            toml::Value::Table(t) if one(&t, "env").is_some() => {
                let env = one(&t, "env").unwrap_or_default();
                std::env::var(&env).map_err(|_| {
                    e.at(
                        at.clone(),
                        format!("{k}: environment variable {env} is not set (or not UTF-8)"),
                    )
                })?
            }
            toml::Value::Table(t) if one(&t, "file").is_some() => {
                let file = one(&t, "file").unwrap_or_default();
                read_secret(&base.join(file))
                    .map_err(|why| e.at(at.clone(), format!("{k}: {why}")))?
            }
            _ => {
                return Err(e.at(
                    at,
                    format!(
                        "{k}: expected a string, {{ env = \"NAME\" }} or {{ file = \"path\" }}"
                    ),
                ))
            }
        };
        if value.len() > MAX_VALUE_BYTES {
            return Err(e.at(at, format!("{k}: longer than {MAX_VALUE_BYTES} bytes")));
        }
        out.insert(name, value);
    }
    Ok(ScriptConfig(out))
}

/// A secret file: a regular file private to its owner, its text without the final line
/// break. Opened once and read with a bound: a FIFO or a device never blocks a load.
fn read_secret(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let show = |err: std::io::Error| format!("{}: {err}", path.display());
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    {
        // Opening a FIFO for reading would wait for a writer: never wait.
        use std::os::unix::fs::OpenOptionsExt;
        open.custom_flags(libc::O_NONBLOCK);
    }
    let file = open.open(path).map_err(show)?;
    let meta = file.metadata().map_err(show)?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{} is readable by group or others: chmod 600 it",
                path.display()
            ));
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_VALUE_BYTES as u64 + 3)
        .read_to_end(&mut bytes)
        .map_err(show)?;
    if bytes.len() > MAX_VALUE_BYTES + 2 {
        return Err(format!(
            "{} is longer than {MAX_VALUE_BYTES} bytes",
            path.display()
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))?;
    Ok(text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text)
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_show_in_debug_output() {
        let c = ScriptConfig::of([("jwt_secret", "hunter2-hunter2")]);
        assert_eq!(c.get("jwt_secret"), Some("hunter2-hunter2"));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("jwt_secret") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
