//! Instances kept from one request to the next, for sites that opt in (`instance_reuse`).
//!
//! Per-request isolation is the default: every request gets a fresh instance, and nothing a
//! script keeps in its memory outlives the request. `[site.limits] instance_reuse = N` lets
//! one instance be handed out up to N times, one request after another, as Cloudflare
//! Workers reuse an isolate: instantiating and resetting an instance is most of what a
//! script costs per request, but a script's globals then carry over from one visitor's
//! request to the next. So it takes both sides: the site sets it, and the script declares
//! `reusable` (it keeps nothing of one request for the next); without the declaration the
//! setting is ignored, with a warning at load.
//!
//! An instance goes back on the shelf only after a request whose hooks all returned
//! normally: never after a trap, a timeout or a refused output (failed hooks drop it before
//! it gets here), never when a call was cut off midway (its request went away while the
//! guest ran), never after it ran an HTML rewrite (which may stop halfway through a
//! document), never once its memory grew past [`KEEP_MEMORY`], and never past its `N`.
//! At most [`MAX_KEPT`] instances wait on shelves across the process; the engine reserves
//! their slots beyond the admitted ones, so a kept instance never keeps a request waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use prometheus_client::metrics::counter::Counter;

use super::script::Instance;

/// Most instances kept between requests at once, across all scripts.
pub const MAX_KEPT: usize = 32;

/// An instance whose linear memories grew past this (together) is dropped rather than kept:
/// a kept instance holds its pages, and a leaking script would hold ever more.
pub const KEEP_MEMORY: usize = 8 << 20;

/// Instances on all shelves now.
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// One script's idle instances.
pub(super) struct Shelf {
    reuse: u32,
    kept: Mutex<Vec<Instance>>,
    fresh: Counter,
    reused: Counter,
}

impl Shelf {
    /// A shelf for a script of `site` whose instances may serve `reuse` requests each.
    pub fn new(site: &str, reuse: u32) -> Shelf {
        let count = |how: &str| {
            crate::observe::metrics()
                .guest_instances
                .get_or_create(&crate::observe::GuestInstance {
                    site: site.to_owned(),
                    how: how.to_owned(),
                })
                .clone()
        };
        Shelf {
            reuse,
            kept: Mutex::new(Vec::new()),
            fresh: count("fresh"),
            reused: count("reused"),
        }
    }

    /// A kept instance, if there is one; counts what the request got either way.
    pub fn take(&self) -> Option<Instance> {
        let got = if self.reuse == 0 {
            None
        } else {
            self.kept
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
        };
        match got {
            Some(_) => {
                KEPT.fetch_sub(1, Ordering::AcqRel);
                self.reused.inc();
            }
            None => {
                self.fresh.inc();
            }
        }
        got
    }

    /// Keeps `instance` for a later request if it may serve one; otherwise drops it.
    pub fn put(&self, instance: Instance) {
        if !self.may_keep(&instance) {
            return;
        }
        if KEPT.fetch_add(1, Ordering::AcqRel) >= MAX_KEPT {
            KEPT.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(instance);
    }

    fn may_keep(&self, instance: &Instance) -> bool {
        instance.clean
            && !instance.retired
            && instance.served < self.reuse
            && instance.store.data().limits.memory <= KEEP_MEMORY
    }
}

impl Drop for Shelf {
    fn drop(&mut self) {
        let n = self
            .kept
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        KEPT.fetch_sub(n, Ordering::AcqRel);
    }
}
