//! Fleet-wide purges through a Redis stream. A purge (or publish event) accepted by any
//! node is applied there, appended to the stream (`XADD`; the admin API answers once Redis
//! has it), and applied by every other node, which reads the stream (`XREAD`) from the
//! last entry it saw: a node whose connection dropped replays what it missed when it is
//! back. A node that fell so far behind that the stream was trimmed past its last entry
//! cannot know what it missed: it empties its cache and says so in its log and metrics.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::AsyncConnectionConfig;
use serde::{Deserialize, Serialize};

use crate::cache::{Purge, Store};
use crate::config::FleetConfig;

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
    stream: String,
    node: String,
    /// This process: its own entries are skipped by this, not by the node's name, which
    /// may repeat across nodes (`HOSTNAME` unset everywhere).
    instance: String,
    publisher: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

fn count(event: &str) {
    crate::observe::metrics()
        .fleet
        .get_or_create(&crate::observe::FleetEvent {
            event: event.to_owned(),
        })
        .inc();
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
            stream: cfg.stream.clone(),
            node: node.to_owned(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            publisher: tokio::sync::Mutex::new(None),
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
        tokio::spawn(async move {
            let mut last: Option<String> = None;
            let mut wait = Duration::from_millis(200);
            loop {
                let mut connected = false;
                match self.follow_once(&store, &mut last, &mut connected).await {
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

    /// Reads until an error: from the stream's end on the first call, else from `last`.
    async fn follow_once(
        &self,
        store: &Store,
        last: &mut Option<String>,
        connected: &mut bool,
    ) -> redis::RedisResult<()> {
        let mut con = self.connect(BLOCK + Duration::from_secs(5)).await?;
        *connected = true;
        let from = match last.clone() {
            None => {
                // A node that starts has an empty cache: only what comes from now on.
                let id = self.newest(&mut con).await?;
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
        *last = Some(from);
        loop {
            let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("COUNT")
                .arg(256)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(last.as_deref().unwrap_or("0-0"))
                .query_async(&mut con)
                .await?;
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                for entry in key.ids {
                    self.apply(store, &entry);
                    *last = Some(entry.id);
                }
            }
        }
    }

    /// The stream's newest entry id (`0-0` when it is empty).
    async fn newest(&self, con: &mut MultiplexedConnection) -> redis::RedisResult<String> {
        let newest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(&self.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(con)
            .await?;
        Ok(newest
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |e| e.0))
    }

    /// After a reconnect: if the entry we saw last was trimmed away and newer ones exist,
    /// some in between may be gone too. Nothing tells which: empty the cache (true).
    async fn check_gap(
        &self,
        con: &mut MultiplexedConnection,
        store: &Store,
        last: &str,
    ) -> redis::RedisResult<bool> {
        if last == "0-0" {
            return Ok(false);
        }
        let still: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg(last)
            .arg(last)
            .query_async(&mut *con)
            .await?;
        if !still.is_empty() {
            return Ok(false);
        }
        let oldest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut *con)
            .await?;
        let behind = match oldest.first() {
            Some((id, _)) => id_of(id) > id_of(last),
            // The stream is gone (Redis lost it): what was in it is unknown.
            None => true,
        };
        if behind {
            let objects = store.purge(&Purge::All, false);
            count("flushed_behind");
            tracing::warn!(
                target: "tessera::audit",
                objects,
                last,
                "fleet: purges may have been missed (the stream no longer reaches back to the last one seen): cache emptied"
            );
        }
        Ok(behind)
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
