//! HTML at delivery: ESI assembly (host-native) and the site's scripts' streaming rewrite.

pub mod esi;
pub mod rewrite;

use std::future::Future;
use std::task::{Context, Poll};

/// Runs `fut` as far as it goes without waiting; spawns it as a task only if it must wait.
/// Cached fragments and in-memory pages finish in that first poll, and a task per fragment
/// or page would cost more than the work itself.
pub(crate) fn run_or_spawn<F>(fut: F) -> Result<F::Output, tokio::task::JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut fut = Box::pin(fut);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Ok(v),
        // Polled once with a no-op waker; the task polls it again with a real one.
        Poll::Pending => Err(tokio::spawn(fut)),
    }
}

/// Appends `v` to `out` with `& < > " '` escaped: safe as HTML text and as a quoted
/// attribute value.
pub fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}
