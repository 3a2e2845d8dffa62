//! The thundering herd's client: N connections opened first, then one request on each, all at
//! once, for the same cold URL; prints how many were answered and their latency.
//!
//! `cargo bench -p tessera --bench herd -- PORT PATH [N]` (N defaults to 200), run by
//! `bench/load/hits.py` against the origin and each proxy. Not a criterion benchmark.
//!
//! Why not Python or curl: a Python client reads 200 answers that arrive together one after
//! another, behind its interpreter lock, and curl opens its connections inside the measured
//! time. Here every connection is open before the first request leaves, the requests are
//! written in one loop, each timed from its own write to the last byte of its answer, and the
//! answers are read on one thread as they come. Percentiles are nearest-rank over the
//! requests answered 200 with their whole body; the first other outcome is printed to stderr.
//! Only 127.0.0.1 is ever contacted, answers are bounded in size, an answer not complete
//! after 30 s counts as unanswered, and the whole run gives up after 60 s.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer read (head and body): the herd's bodies are a few dozen bytes.
const MAX_ANSWER: usize = 1 << 20;
/// How long one answer may take before it counts as unanswered (the origin takes 300 ms).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    // `cargo bench` passes `--bench`; everything else is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(port), Some(path)) = (
        args.first().and_then(|p| p.parse::<u16>().ok()),
        args.get(1).filter(|p| p.starts_with('/')),
    ) else {
        eprintln!("usage: herd PORT /PATH [N]");
        std::process::exit(2);
    };
    let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let run = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), herd(port, path, n)).await
    });
    let mut lat = match run {
        Ok(Ok(lat)) => lat,
        Ok(Err(e)) => {
            eprintln!("herd: {e}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("herd: no answer to every request within 60 s");
            std::process::exit(1);
        }
    };
    lat.sort();
    let Some(last) = lat.len().checked_sub(1) else {
        println!("answered 0 of {n}");
        return;
    };
    let at = |q: f64| lat[(last as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "answered {} of {n}, min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        lat.len(),
        at(0.0),
        at(0.5),
        at(0.9),
        at(1.0)
    );
}

/// Opens `n` connections, writes one GET on each, and returns the latency of every request
/// answered 200 with its whole body.
async fn herd(port: u16, path: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        streams.push(tcp);
    }
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut sent = Vec::with_capacity(n);
    for tcp in &mut streams {
        sent.push(Instant::now());
        tcp.write_all(request.as_bytes()).await?;
    }
    // Connections stay open until every answer is in, as a browser's would: a client that
    // hangs up as soon as it is answered makes the proxy handle its close while it still
    // writes the others' answers.
    let mut tasks = tokio::task::JoinSet::new();
    for (mut tcp, sent) in streams.into_iter().zip(sent) {
        tasks.spawn(async move {
            let answer = tokio::time::timeout(ANSWER_TIMEOUT, read_answer(&mut tcp)).await;
            let outcome = match answer {
                Ok(Ok(200)) => Ok(sent.elapsed()),
                Ok(Ok(status)) => Err(format!("status {status}")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no whole answer within {ANSWER_TIMEOUT:?}")),
            };
            (tcp, outcome)
        });
    }
    let mut lat = Vec::with_capacity(n);
    let mut open = Vec::with_capacity(n);
    let mut first_failure = None;
    while let Some(done) = tasks.join_next().await {
        let (tcp, outcome) = done?;
        match outcome {
            Ok(l) => lat.push(l),
            Err(e) => {
                first_failure.get_or_insert(e);
            }
        }
        open.push(tcp);
    }
    drop(open);
    if let Some(e) = first_failure {
        eprintln!(
            "herd: {} of {n} not answered 200 in whole; first: {e}",
            n - lat.len()
        );
    }
    Ok(lat)
}

/// Reads one HTTP/1.1 answer to its last byte (Content-Length or chunked) and returns its
/// status.
async fn read_answer(tcp: &mut TcpStream) -> anyhow::Result<u16> {
    let mut buf = Vec::with_capacity(4096);
    let (status, head, framing) = loop {
        if tcp.read_buf(&mut buf).await? == 0 {
            anyhow::bail!("closed before the head");
        }
        anyhow::ensure!(buf.len() <= MAX_ANSWER, "head too large");
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(head) = resp.parse(&buf)? {
            let value = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let framing = match (value("content-length"), value("transfer-encoding")) {
                (_, Some(te)) if te.to_ascii_lowercase().contains("chunked") => None,
                (Some(len), _) => Some(len.trim().parse::<usize>()?),
                _ => anyhow::bail!("neither Content-Length nor chunked"),
            };
            break (resp.code.unwrap_or(0), head, framing);
        }
    };
    buf.drain(..head);
    loop {
        let done = match framing {
            Some(len) => buf.len() >= len,
            None => chunked_end(&buf)?,
        };
        if done {
            return Ok(status);
        }
        anyhow::ensure!(head + buf.len() <= MAX_ANSWER, "answer too large");
        if tcp.read_buf(&mut buf).await? == 0 {
            anyhow::bail!("closed before the end of the body");
        }
    }
}

/// Whether `body` holds a whole chunked body: its chunks, the zero-size last chunk, any
/// trailer fields and the blank line that ends them.
fn chunked_end(mut body: &[u8]) -> anyhow::Result<bool> {
    loop {
        match httparse::parse_chunk_size(body) {
            Ok(httparse::Status::Complete((at, 0))) => {
                let rest = &body[at..];
                return Ok(rest.starts_with(b"\r\n") || rest.windows(4).any(|w| w == b"\r\n\r\n"));
            }
            Ok(httparse::Status::Complete((at, size))) => {
                let size = usize::try_from(size)?;
                let data_end = at.saturating_add(size);
                let end = data_end.saturating_add(2);
                if body.len() < end {
                    return Ok(false);
                }
                anyhow::ensure!(&body[data_end..end] == b"\r\n", "chunk not ended by CRLF");
                body = &body[end..];
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(_) => anyhow::bail!("bad chunk size"),
        }
    }
}
