//! Request coalescing: at most one origin fetch per key in flight; others wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Where a request stands with respect to the fetch for its key.
pub enum Role<T: Clone> {
    /// This request fetches; it must `finish` (or drop, which releases the waiters).
    Leader(Leader<T>),
    /// Another request is fetching; wait for its outcome.
    Follower(Follower<T>),
}

type Flights<T> = Arc<Mutex<HashMap<String, watch::Receiver<Option<T>>>>>;

/// The set of fetches in flight.
pub struct Coalescer<T: Clone> {
    flights: Flights<T>,
}

impl<T: Clone> Default for Coalescer<T> {
    fn default() -> Self {
        Coalescer {
            flights: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<T: Clone> Coalescer<T> {
    /// Joins the flight for `key`, becoming its leader if there is none.
    pub fn join(&self, key: &str) -> Role<T> {
        let mut flights = self.flights.lock().expect("coalescer lock");
        if let Some(rx) = flights.get(key) {
            return Role::Follower(Follower(rx.clone()));
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key.to_owned(), rx);
        Role::Leader(Leader {
            key: key.to_owned(),
            tx: Some(tx),
            flights: self.flights.clone(),
        })
    }

    /// Whether no fetch is under way (`tessera test` waits for background refreshes).
    pub fn is_idle(&self) -> bool {
        self.flights.lock().expect("coalescer lock").is_empty()
    }

    /// Whether a fetch for `key` is under way.
    #[cfg(test)]
    pub fn in_flight(&self, key: &str) -> bool {
        self.flights
            .lock()
            .expect("coalescer lock")
            .contains_key(key)
    }
}

/// The request that fetches for everybody.
pub struct Leader<T: Clone> {
    key: String,
    tx: Option<watch::Sender<Option<T>>>,
    flights: Flights<T>,
}

impl<T: Clone> Leader<T> {
    /// Hands the outcome to every follower and closes the flight.
    pub fn finish(mut self, outcome: T) {
        self.close();
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(outcome));
        }
    }

    /// Hands followers an early outcome and keeps the flight open: those that accept it go
    /// on with it, the others wait for [`Leader::finish`]; later arrivals see it too.
    pub fn publish(&self, early: T) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Some(early));
        }
    }

    fn close(&self) {
        self.flights
            .lock()
            .expect("coalescer lock")
            .remove(&self.key);
    }
}

impl<T: Clone> Drop for Leader<T> {
    fn drop(&mut self) {
        // A leader that goes away (client hung up, panic) drops the sender; followers
        // see the channel closed and retry on their own.
        if self.tx.is_some() {
            self.close();
        }
    }
}

/// A request waiting for the leader's outcome.
pub struct Follower<T: Clone>(watch::Receiver<Option<T>>);

impl<T: Clone> Follower<T> {
    /// The leader's outcome, or `None` if the leader gave up.
    pub async fn wait(self) -> Option<T> {
        self.wait_for(|_| true).await
    }

    /// The first outcome `accept` takes (an early one, or the final one), or what the
    /// flight ended with: the final outcome, or `None` if the leader gave up.
    pub async fn wait_for(mut self, accept: impl Fn(&T) -> bool) -> Option<T> {
        loop {
            if let Some(v) = self.0.borrow_and_update().clone() {
                if accept(&v) {
                    return Some(v);
                }
            }
            if self.0.changed().await.is_err() {
                return self.0.borrow().clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_receive_the_leaders_outcome() {
        let c: Coalescer<u32> = Coalescer::default();
        let Role::Leader(l) = c.join("k") else {
            panic!("first is leader")
        };
        let Role::Follower(f) = c.join("k") else {
            panic!("second follows")
        };
        let w = tokio::spawn(f.wait());
        l.finish(7);
        assert_eq!(w.await.unwrap(), Some(7));
        assert!(!c.in_flight("k"));
    }

    #[tokio::test]
    async fn an_early_outcome_reaches_those_that_take_it_and_the_rest_wait_for_the_end() {
        let c: Coalescer<u32> = Coalescer::default();
        let Role::Leader(l) = c.join("k") else {
            panic!()
        };
        let Role::Follower(early) = c.join("k") else {
            panic!()
        };
        let Role::Follower(last) = c.join("k") else {
            panic!()
        };
        let last = tokio::spawn(last.wait_for(|v| *v != 1));
        l.publish(1);
        assert_eq!(early.wait().await, Some(1));
        let Role::Follower(late) = c.join("k") else {
            panic!("still in flight")
        };
        assert_eq!(late.wait().await, Some(1));
        l.finish(2);
        assert_eq!(last.await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn an_abandoned_flight_releases_followers() {
        let c: Coalescer<u32> = Coalescer::default();
        let Role::Leader(l) = c.join("k") else {
            panic!()
        };
        let Role::Follower(f) = c.join("k") else {
            panic!()
        };
        drop(l);
        assert_eq!(f.wait().await, None);
        assert!(matches!(c.join("k"), Role::Leader(_)));
    }
}
