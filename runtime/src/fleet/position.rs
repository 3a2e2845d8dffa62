//! Where a node's cache stands in the purge stream, kept beside a disk tier: a cache that
//! outlives its process must resume the stream where it left off, or it would keep serving
//! what was purged while it was down.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The file in the disk tier's directory.
const FILE: &str = "fleet-position";

/// The last stream entry applied to a disk-backed cache, for one Redis and stream.
#[derive(Clone)]
pub struct Position {
    path: PathBuf,
    /// Which Redis and stream the id belongs to (a hash: the URL may hold a password).
    link: String,
}

impl Position {
    /// The position of the cache in `dir` on the stream `stream` of `redis`.
    pub fn new(dir: &Path, redis: &str, stream: &str) -> Position {
        let mut h = Sha256::new();
        h.update(redis.as_bytes());
        h.update([0]);
        h.update(stream.as_bytes());
        Position {
            path: dir.join(FILE),
            link: format!("{:x}", h.finalize()),
        }
    }

    /// The id saved last for this link; `None` when there is none (a new directory, another
    /// Redis or stream, or a damaged file: the caller cannot know what the cache missed).
    pub fn load(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let (link, id) = text.trim_end().split_once(' ')?;
        (link == self.link && super::id_of(id).is_some()).then(|| id.to_owned())
    }

    /// Records `id` as applied (written aside and renamed: a crash leaves the old one,
    /// which only replays a few purges).
    pub fn save(&self, id: &str) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, format!("{} {id}\n", self.link))?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_read_back_only_for_its_own_redis_and_stream() {
        let dir = tempfile::tempdir().unwrap();
        let p = Position::new(dir.path(), "redis://a:6379", "tessera:purges");
        assert_eq!(p.load(), None);
        p.save("1700000000000-3").unwrap();
        assert_eq!(p.load().as_deref(), Some("1700000000000-3"));
        let other = Position::new(dir.path(), "redis://b:6379", "tessera:purges");
        assert_eq!(other.load(), None);
        let stream = Position::new(dir.path(), "redis://a:6379", "other");
        assert_eq!(stream.load(), None);
        std::fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert_eq!(p.load(), None);
    }
}
