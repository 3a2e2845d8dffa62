//! Value syntax shared by every table: sizes, and turning byte spans into line numbers.

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::raw::Size;
use super::ConfigError;

/// Builds errors for one file; knows the text so it can turn spans into lines.
pub(super) struct Errors<'a> {
    pub file: PathBuf,
    pub text: &'a str,
}

impl Errors<'_> {
    /// An error at `span` (or without a place).
    pub fn at(&self, span: Option<Range<usize>>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: span.map(|s| line_of(self.text, s.start)),
            message,
        }
    }

    /// An error the TOML parser found at `span`: its message names the key written on
    /// that line, with the table it is in (`site.limits.cpu_ms: invalid type…`), since
    /// serde's own words ("expected u64") do not.
    pub fn parser(&self, span: Option<Range<usize>>, message: &str) -> ConfigError {
        let key = span.as_ref().and_then(|s| key_at(self.text, s.start));
        let message = match key {
            Some(k) if !message.contains(&k) => format!("{k}: {message}"),
            _ => message.to_owned(),
        };
        self.at(span, message)
    }

    /// A size such as `268435456`, `"256MiB"` or `"1GiB"`, above zero.
    pub fn size(
        &self,
        v: &Option<Spanned<Size>>,
        key: &str,
        default: u64,
    ) -> Result<u64, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let bytes = match v.get_ref() {
            Size::Bytes(b) => Some(*b),
            Size::Text(t) => parse_size(t),
        };
        match bytes {
            Some(b) if b > 0 => Ok(b),
            _ => Err(self.at(
                Some(v.span()),
                format!("{key}: expected a size such as 268435456, \"256MiB\" or \"1GiB\""),
            )),
        }
    }

    /// A whole number within `range`.
    pub fn number(
        &self,
        v: &Option<Spanned<u64>>,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref()),
            Some(v) => Err(self.at(
                Some(v.span()),
                format!(
                    "{key}: {} is out of range ({}..={})",
                    v.get_ref(),
                    range.start(),
                    range.end()
                ),
            )),
        }
    }
}

/// Parses sizes such as `512`, `64KiB`, `256 MiB`, `1GiB` (also KB/MB/GB as binary units).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The dotted key written on the line holding byte `at` (`site.limits.cpu_ms` for
/// `cpu_ms = …` under `[site.limits]`), if that line is a plain `key = value`.
fn key_at(text: &str, at: usize) -> Option<String> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (name, _) = line.split_once('=')?;
    let name = name.trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    if name.is_empty() || !name.chars().all(bare) {
        return None;
    }
    // The nearest table header above the line, `[a.b]` or `[[a]]`.
    let table = text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        let inner = l.strip_prefix('[')?.split(']').next()?;
        Some(inner.trim_start_matches('[').trim().to_owned())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{name}"),
        _ => name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_size("256MiB"), Some(256 << 20));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }

    #[test]
    fn a_parser_error_names_the_key_on_its_line() {
        let text = "[[site]]\nname = \"a\"\n[site.limits]\ncpu_ms = -1\n  \"x\",\n";
        let at = text.find("-1").unwrap();
        assert_eq!(key_at(text, at).as_deref(), Some("site.limits.cpu_ms"));
        assert_eq!(key_at("listen = 1\n", 9).as_deref(), Some("listen"));
        assert_eq!(key_at(text, text.find("\"x\"").unwrap()), None);
        assert_eq!(key_at(text, text.len() + 5), None);
    }
}
