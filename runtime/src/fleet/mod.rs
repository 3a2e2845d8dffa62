//! Fleet-wide purges through a Redis stream. A purge (or publish event) accepted by any
//! node is applied there, appended to the stream (`XADD`; the admin API answers once Redis
//! has it), and applied by every other node, which reads the stream (`XREAD`) from the
//! last entry it saw: a node whose connection dropped replays what it missed when it is
//! back. A node that fell so far behind that the stream was trimmed past its last entry
//! cannot know what it missed: it empties its cache and says so in its log and metrics.
//! A disk tier's cache outlives the process, so its position in the stream is kept beside
//! it (`position`) and a restart resumes from there.

mod position;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::AsyncConnectionConfig;
use serde::{Deserialize, Serialize};

use crate::cache::disk::Disk;
use crate::cache::{Purge, Store};
use crate::config::FleetConfig;
use position::Position;

/// Entries kept in the stream (approximately: Redis trims whole nodes).
pub const STREAM_LENGTH: u64 = 100_000;
/// How long one `XREAD` waits for new entries before asking again.
const BLOCK: Duration = Duration::from_secs(5);
/// Longest wait between attempts to reach Redis again.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// One stream entry: the purges one request made on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The node that accepted them (it applied them already), for logs.
    pub node: String,
    /// That node's process, told apart from every other (node names may repeat).
    #[serde(default)]
    pub instance: String,
    /// The purges, each with its `soft` flag.
    pub purges: Vec<(Purge, bool)>,
}

/// This node's link to the fleet's stream.
pub struct Fleet {
    client: redis::Client,
    /// As configured: it names the link a disk tier's [`Position`] belongs to.
    url: String,
    stream: String,
    node: String,
    /// This process: its own entries are skipped by this, not by the node's name, which
    /// may repeat across nodes (`HOSTNAME` unset everywhere).
    instance: String,
    publisher: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Before anything could be cached: the first connection replays the stream from
    /// this moment (on Redis's clock), so that a node that could not reach Redis at once
    /// still applies the purges made while it was already caching.
    started: Instant,
}

fn count(event: &str) {
    crate::observe::metrics()
        .fleet
        .get_or_create(&crate::observe::FleetEvent {
            event: event.to_owned(),
        })
        .inc();
}

/// Empties the cache because purges may have been missed: counted and audited with `why`.
fn empty(store: &Store, why: &str) {
    let objects = store.purge(&Purge::All, false);
    count("flushed_behind");
    tracing::warn!(target: "tessera::audit", objects, "{why}");
}

/// Where following starts, and what is done on the way.
struct Start {
    /// The last entry applied (`None`: none yet, on this process or its disk).
    last: Option<String>,
    /// With a disk tier: where the newest applied id goes to be saved.
    saver: Option<tokio::sync::watch::Sender<Option<String>>>,
}

impl Start {
    /// Entries up to `id` are applied: remember it, on disk too.
    fn applied(&mut self, id: String) {
        if let Some(s) = &self.saver {
            s.send_replace(Some(id.clone()));
        }
        self.last = Some(id);
    }
}

/// Saves the newest applied id beside `disk`, each time once the disk has carried out every
/// purge queued before it and its start-up scan (which applies purges to files it finds
/// later) is over: a position on disk never runs ahead of the files. Ids that arrive
/// meanwhile are coalesced, so following the stream is never held up.
fn keep_position(
    disk: Arc<Disk>,
    position: Position,
) -> tokio::sync::watch::Sender<Option<String>> {
    let (tx, mut rx) = tokio::sync::watch::channel(None::<String>);
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let Some(id) = rx.borrow_and_update().clone() else {
                continue;
            };
            let (disk, position) = (disk.clone(), position.clone());
            let saved = tokio::task::spawn_blocking(move || {
                disk.wait_loaded();
                disk.flush();
                position.save(&id)
            })
            .await;
            if let Ok(Err(e)) = saved {
                // A restart then replays from an older entry, or empties the cache.
                tracing::warn!("fleet: cannot record the stream position: {e}");
            }
        }
    });
    tx
}

/// A stream id `ms-seq` as numbers, for ordering.
fn id_of(s: &str) -> Option<(u64, u64)> {
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl Fleet {
    /// The link described by `cfg` for the node `node` (nothing is connected yet).
    pub fn new(cfg: &FleetConfig, node: &str) -> Result<Fleet, String> {
        let client = redis::Client::open(cfg.redis.as_str()).map_err(|e| e.to_string())?;
        Ok(Fleet {
            client,
            url: cfg.redis.clone(),
            stream: cfg.stream.clone(),
            node: node.to_owned(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            publisher: tokio::sync::Mutex::new(None),
            started: Instant::now(),
        })
    }

    async fn connect(&self, response: Duration) -> redis::RedisResult<MultiplexedConnection> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response));
        self.client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
    }

    /// Appends `purges` to the stream; the entry's id once Redis has it.
    pub async fn publish(&self, purges: Vec<(Purge, bool)>) -> Result<String, String> {
        let msg = Message {
            node: self.node.clone(),
            instance: self.instance.clone(),
            purges,
        };
        let body = serde_json::to_string(&msg).map_err(|e| e.to_string())?;
        let mut slot = self.publisher.lock().await;
        // One retry on a fresh connection: the kept one may have died since last time.
        for attempt in 0..2 {
            if slot.is_none() {
                *slot = Some(self.connect(Duration::from_secs(5)).await.map_err(|e| {
                    count("publish_failed");
                    format!("redis: {e}")
                })?);
            }
            let con = slot.as_mut().expect("connected above");
            let added: redis::RedisResult<String> = redis::cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_LENGTH)
                .arg("*")
                .arg("node")
                .arg(&self.node)
                .arg("purges")
                .arg(&body)
                .query_async(con)
                .await;
            match added {
                Ok(id) => {
                    count("published");
                    return Ok(id);
                }
                Err(e) if attempt == 0 => {
                    tracing::warn!("fleet: publishing failed ({e}); reconnecting");
                    *slot = None;
                }
                Err(e) => {
                    count("publish_failed");
                    *slot = None;
                    return Err(format!("redis: {e}"));
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Follows the stream in the background for as long as the process runs, applying
    /// other nodes' purges to `store`.
    pub fn follow(self: Arc<Self>, store: Store) {
        let disk = store.disk().cloned();
        let position = disk
            .as_ref()
            .map(|d| Position::new(d.root(), &self.url, &self.stream));
        let last = position.as_ref().and_then(Position::load);
        if position.is_some() && last.is_none() {
            // A disk cache with no record of the purges it has seen may hold what was purged
            // while it was down: emptied at once, not when Redis is first reached (it would
            // serve those objects meanwhile).
            empty(
                &store,
                "fleet: the disk cache has no record of the purges it has seen: cache emptied",
            );
        }
        let mut start = Start {
            last,
            saver: disk.zip(position).map(|(d, p)| keep_position(d, p)),
        };
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(200);
            loop {
                let mut connected = false;
                match self.follow_once(&store, &mut start, &mut connected).await {
                    Ok(()) => wait = Duration::from_millis(200),
                    Err(e) => {
                        if connected {
                            // It worked for a while: start the back-off over.
                            wait = Duration::from_millis(200);
                        }
                        count("disconnected");
                        tracing::warn!("fleet: lost the purge stream ({e}); again in {wait:?}");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(MAX_RETRY);
                    }
                }
            }
        });
    }

    /// Reads until an error: on the first call from when this process started (or, with a
    /// disk tier, from where its cache left off), else from the last entry seen.
    async fn follow_once(
        &self,
        store: &Store,
        start: &mut Start,
        connected: &mut bool,
    ) -> redis::RedisResult<()> {
        let mut con = self.connect(BLOCK + Duration::from_secs(5)).await?;
        *connected = true;
        let from = match start.last.clone() {
            None => {
                let id = self.since_start(&mut con).await?;
                tracing::info!(stream = %self.stream, from = %id, "fleet: following purges");
                id
            }
            Some(id) => {
                if self.check_gap(&mut con, store, &id).await? {
                    // Emptied: nothing before now can concern this cache any more.
                    self.newest(&mut con).await?
                } else {
                    id
                }
            }
        };
        start.applied(from);
        loop {
            let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("COUNT")
                .arg(256)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(start.last.as_deref().unwrap_or("0-0"))
                .query_async(&mut con)
                .await?;
            let mut newest = None;
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                for entry in key.ids {
                    self.apply(store, &entry);
                    newest = Some(entry.id);
                }
            }
            if let Some(id) = newest {
                start.applied(id);
            }
        }
    }

    /// The id from which entries are newer than this process: Redis's clock now, less the
    /// time since it started and a second of margin (the node's own clock may be off; a
    /// purge replayed on an object fetched after it costs one refetch, a missed one is
    /// served stale).
    async fn since_start(&self, con: &mut MultiplexedConnection) -> redis::RedisResult<String> {
        if !self.exists(con).await? {
            // Every entry will be new; and `0-0` tells a later reconnect that a missing
            // stream is one that never was, not one Redis lost.
            return Ok("0-0".to_owned());
        }
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut *con).await?;
        let now_ms = secs.saturating_mul(1000).saturating_add(micros / 1000);
        let back = self.started.elapsed() + Duration::from_secs(1);
        Ok(format!(
            "{}-0",
            now_ms.saturating_sub(back.as_millis() as u64)
        ))
    }

    /// Whether the stream exists (Redis drops an emptied one only when told to).
    async fn exists(&self, con: &mut MultiplexedConnection) -> redis::RedisResult<bool> {
        redis::cmd("EXISTS")
            .arg(&self.stream)
            .query_async(con)
            .await
    }

    /// The stream's newest entry id (`0-0` when it is empty).
    async fn newest(&self, con: &mut MultiplexedConnection) -> redis::RedisResult<String> {
        Ok(self
            .end(con, "XREVRANGE", ["+", "-"])
            .await?
            .unwrap_or_else(|| "0-0".to_owned()))
    }

    /// The id at one end of the stream (`XRANGE - +`: oldest; `XREVRANGE + -`: newest).
    async fn end(
        &self,
        con: &mut MultiplexedConnection,
        cmd: &str,
        range: [&str; 2],
    ) -> redis::RedisResult<Option<String>> {
        let one: Vec<(String, Vec<(String, String)>)> = redis::cmd(cmd)
            .arg(&self.stream)
            .arg(range[0])
            .arg(range[1])
            .arg("COUNT")
            .arg(1)
            .query_async(con)
            .await?;
        Ok(one.into_iter().next().map(|e| e.0))
    }

    /// After a reconnect: whether entries after `last` may have been deleted (trimmed away,
    /// or the stream lost with Redis) — nothing tells which: then the cache is emptied
    /// (true).
    async fn check_gap(
        &self,
        con: &mut MultiplexedConnection,
        store: &Store,
        last: &str,
    ) -> redis::RedisResult<bool> {
        let behind = self.missed_since(con, last).await?;
        if behind {
            empty(
                store,
                &format!("fleet: purges may have been missed (the stream no longer reaches back to {last}, the last entry seen): cache emptied"),
            );
        }
        Ok(behind)
    }

    /// Whether any entry newer than `last` was deleted from the stream.
    async fn missed_since(
        &self,
        con: &mut MultiplexedConnection,
        last: &str,
    ) -> redis::RedisResult<bool> {
        if !self.exists(con).await? {
            // Lost, unless it never had an entry since we began (`0-0`: it did not exist).
            return Ok(last != "0-0");
        }
        let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.stream)
            .query_async(&mut *con)
            .await?;
        let id = |field: &str| -> redis::RedisResult<Option<(u64, u64)>> {
            Ok(match info.get(field) {
                Some(v) => id_of(&redis::from_redis_value_ref::<String>(v)?),
                None => None,
            })
        };
        let last = id_of(last);
        // Redis 7 records the newest id removed by XDEL.
        if id("max-deleted-entry-id")? > last {
            return Ok(true);
        }
        if id("last-generated-id")? <= last {
            return Ok(false); // nothing was added since
        }
        let number = |field: &str| -> Option<u64> {
            info.get(field)
                .and_then(|v| redis::from_redis_value_ref(v).ok())
        };
        if let (Some(added), Some(length)) = (number("entries-added"), number("length")) {
            if added == length {
                return Ok(false); // Redis 7: nothing was ever removed
            }
        }
        // Trimming removes the oldest first: if the oldest left is not newer than `last`,
        // everything after `last` is still there. Otherwise something after it may be gone.
        let oldest = self.end(con, "XRANGE", ["-", "+"]).await?;
        Ok(oldest.is_none_or(|id| id_of(&id) > last))
    }

    fn apply(&self, store: &Store, entry: &redis::streams::StreamId) {
        let body: Option<String> = entry.get("purges");
        let msg: Option<Message> = body.and_then(|b| serde_json::from_str(&b).ok());
        let Some(msg) = msg else {
            tracing::warn!(id = %entry.id, "fleet: an entry that is not a purge; skipped");
            count("malformed");
            return;
        };
        if msg.instance == self.instance {
            return;
        }
        let mut objects = 0;
        for (target, soft) in &msg.purges {
            objects += store.purge(target, *soft);
        }
        crate::observe::metrics()
            .purged_objects
            .inc_by(objects as u64);
        count("applied");
        tracing::info!(target: "tessera::audit", from = %msg.node, id = %entry.id, objects, "fleet purge");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_the_stream_and_ids_order_numerically() {
        let m = Message {
            node: "edge-1".into(),
            instance: "1f".into(),
            purges: vec![
                (
                    Purge::Tag {
                        tag: "p-1".into(),
                        site: None,
                    },
                    true,
                ),
                (Purge::All, false),
            ],
        };
        let back: Message = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert!(id_of("10-0") > id_of("9-5"));
        assert!(id_of("10-2") > id_of("10-1"));
        assert_eq!(id_of("junk"), None);
    }
}
