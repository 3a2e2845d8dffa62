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
}
