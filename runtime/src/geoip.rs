//! The client's country from a MaxMind DB file (GeoIP2 / GeoLite2 Country or City, or any
//! database whose records hold `country.iso_code`), for sites no CDN tells the country.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Largest database read (GeoLite2-City is about 60 MiB).
const MAX_BYTES: u64 = 512 << 20;

/// An opened database. Two are equal when they come from the same path: a reload reads
/// the file again (it is updated in place weekly) without counting as a settings change.
pub struct GeoIp {
    path: PathBuf,
    reader: maxminddb::Reader<Vec<u8>>,
}

impl GeoIp {
    /// Reads and checks the database at `path`.
    pub fn open(path: &Path) -> Result<GeoIp, String> {
        let len = std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        if len > MAX_BYTES {
            return Err(format!(
                "{}: larger than {} MiB",
                path.display(),
                MAX_BYTES >> 20
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let reader = maxminddb::Reader::from_source(bytes)
            .map_err(|e| format!("{}: not a MaxMind DB file: {e}", path.display()))?;
        Ok(GeoIp {
            path: path.to_owned(),
            reader,
        })
    }

    /// The ISO 3166-1 alpha-2 code (upper case) the database gives `ip`, if any.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        use maxminddb::PathElement::Key;
        let found = self.reader.lookup(ip).ok()?;
        let code: String = found
            .decode_path(&[Key("country"), Key("iso_code")])
            .ok()
            .flatten()?;
        (code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()))
            .then(|| code.to_ascii_uppercase())
    }
}

impl PartialEq for GeoIp {
    fn eq(&self, other: &GeoIp) -> bool {
        self.path == other.path
    }
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeoIp({})", self.path.display())
    }
}
