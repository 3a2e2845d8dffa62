//! The status page: one server-rendered HTML page with inline SVG charts, no scripts and
//! nothing fetched from elsewhere. Every string that came from traffic is escaped.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::html::escape_into;
use crate::observe::{board, Sample, SAMPLES, SAMPLE_EVERY};
use crate::proxy::Shared;

/// Keys listed in the top-keys table.
const TOP: usize = 15;
/// Chart size in SVG user units.
const W: f64 = 560.0;
const H: f64 = 120.0;
/// Left margin for the axis labels.
const PAD: f64 = 44.0;

fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    escape_into(&mut s, v);
    s
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).unwrap_or_default().as_secs_f64()
}

/// Chart points: (seconds before now, value).
type Points = Vec<(f64, f64)>;

/// Hit ratio and origin requests per second over each interval between samples, placed at
/// the interval's end, in seconds before `now`.
fn series(samples: &[Sample], now: SystemTime) -> (Points, Points) {
    let mut ratio = Vec::new();
    let mut origin = Vec::new();
    for w in samples.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let dt = secs_between(a.at, b.at);
        if dt < 0.5 {
            continue;
        }
        let ago = secs_between(b.at, now);
        let requests = b.requests.saturating_sub(a.requests);
        if requests > 0 {
            ratio.push((ago, b.hits.saturating_sub(a.hits) as f64 / requests as f64));
        }
        origin.push((ago, b.origin.saturating_sub(a.origin) as f64 / dt));
    }
    (ratio, origin)
}

/// A line chart of `points` (seconds ago, value) over the window the board keeps.
fn chart(
    out: &mut String,
    label: &str,
    points: &[(f64, f64)],
    y_max: f64,
    y_label: &dyn Fn(f64) -> String,
) {
    let window = (SAMPLES as u64 * SAMPLE_EVERY.as_secs()) as f64;
    let x = |ago: f64| PAD + (W - PAD) * (1.0 - (ago / window).clamp(0.0, 1.0));
    let y = |v: f64| 6.0 + (H - 24.0) * (1.0 - (v / y_max).clamp(0.0, 1.0));
    let _ = write!(
        out,
        "<svg class=chart viewBox=\"0 0 {W} {H}\" role=img aria-label=\"{}\">",
        esc(label)
    );
    for frac in [0.0, 0.5, 1.0] {
        let v = y_max * frac;
        let _ = write!(
            out,
            "<line x1={PAD} x2={W} y1={y:.1} y2={y:.1} class=grid /><text x={} y={:.1} class=axis text-anchor=end>{}</text>",
            PAD - 4.0,
            y(v) + 4.0,
            esc(&y_label(v)),
            y = y(v),
        );
    }
    let minutes = window as u64 / 60;
    let _ = write!(
        out,
        "<text x={PAD} y={} class=axis>{minutes} min ago</text><text x={W} y={} class=axis text-anchor=end>now</text>",
        H - 2.0,
        H - 2.0
    );
    if points.is_empty() {
        let _ = write!(
            out,
            "<text x={} y={} class=axis text-anchor=middle>no data yet: a point every {} s of traffic</text>",
            (PAD + W) / 2.0,
            H / 2.0,
            SAMPLE_EVERY.as_secs()
        );
    } else {
        let path: Vec<String> = points
            .iter()
            .rev()
            .map(|(ago, v)| format!("{:.1},{:.1}", x(*ago), y(*v)))
            .collect();
        let _ = write!(out, "<polyline class=line points=\"{}\" />", path.join(" "));
        for (ago, v) in points {
            let _ = write!(
                out,
                "<circle cx={:.1} cy={:.1} r=2 class=dot />",
                x(*ago),
                y(*v)
            );
        }
    }
    out.push_str("</svg>");
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn ago(at: SystemTime, now: SystemTime) -> String {
    let s = now.duration_since(at).unwrap_or_default().as_secs();
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

fn percent(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem auto;max-width:62rem;padding:0 1rem;color:#1d2330}\
h1{font-size:1.3rem;margin:0}h2{font-size:1rem;margin:1.5rem 0 .4rem}.sub{color:#5b6474}\
.cards{display:flex;flex-wrap:wrap;gap:.6rem;margin:1rem 0}.card{border:1px solid #d9dde5;border-radius:6px;padding:.5rem .8rem;min-width:8rem}\
.card b{display:block;font-size:1.2rem}.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(22rem,1fr));gap:1rem}\
.chart{width:100%;height:auto;border:1px solid #d9dde5;border-radius:6px}.grid{stroke:#eceff4}.axis{font-size:10px;fill:#5b6474}\
.line{fill:none;stroke:#2f6fdb;stroke-width:1.5}.dot{fill:#2f6fdb}table{border-collapse:collapse;width:100%}\
td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #eceff4;vertical-align:top}td.n,th.n{text-align:right}\
code{font-size:12px;word-break:break-all}.empty{color:#5b6474}";

/// The page, as of `now`.
pub(super) fn render(shared: &Shared, now: SystemTime) -> String {
    let gen = shared.generation();
    let b = board();
    let samples = b.samples();
    let last = samples.last().copied();
    let (requests, hits, origin) = last.map_or((0, 0, 0), |s| (s.requests, s.hits, s.origin));
    let (ratio, origin_rate) = series(&samples, now);
    let uptime = now.duration_since(b.started()).unwrap_or_default();
    let mut o = String::with_capacity(16 * 1024);
    let _ = write!(
        o,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <meta http-equiv=refresh content=10><title>Tessera · {node}</title><style>{STYLE}</style></head><body>\
         <h1>Tessera · {node}</h1><div class=sub>version {ver} · config generation {g} · up {up} · {state}</div>",
        node = esc(&gen.config.node_name),
        ver = env!("CARGO_PKG_VERSION"),
        g = gen.version,
        up = humanize(uptime),
        state = if shared.draining() { "draining" } else { "serving" },
    );
    let hit_ratio = if requests > 0 {
        percent(hits as f64 / requests as f64)
    } else {
        "–".into()
    };
    let _ = write!(
        o,
        "<div class=cards><div class=card>requests<b>{requests}</b></div><div class=card>hit ratio<b>{hit_ratio}</b></div>\
         <div class=card>origin requests<b>{origin}</b></div><div class=card>cache entries<b>{entries}</b></div>\
         <div class=card>cache size<b>{size}</b>of {max}</div></div>",
        entries = shared.store.entry_count(),
        size = bytes(shared.store.weighted_size()),
        max = bytes(gen.config.cache.max_bytes),
    );
    o.push_str("<div class=charts><div><h2>Hit ratio</h2>");
    chart(
        &mut o,
        "hit ratio over the last minutes",
        &ratio,
        1.0,
        &percent,
    );
    o.push_str("</div><div><h2>Origin requests per second</h2>");
    let peak = origin_rate.iter().map(|p| p.1).fold(0.0, f64::max);
    let top = nice_max(peak);
    chart(
        &mut o,
        "origin requests per second over the last minutes",
        &origin_rate,
        top,
        &|v| {
            if top < 10.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            }
        },
    );
    o.push_str("</div></div>");

    o.push_str("<h2>Top keys by hits</h2>");
    let top_keys = b.top_keys(TOP);
    if top_keys.is_empty() {
        o.push_str("<p class=empty>No hits yet.</p>");
    } else {
        o.push_str("<table><tr><th>site</th><th>key</th><th class=n>hits</th></tr>");
        for (key, n) in &top_keys {
            let (site, k) = key.split_once('\u{1f}').unwrap_or(("", key));
            let _ = write!(
                o,
                "<tr><td>{}</td><td><code>{}</code></td><td class=n>{n}</td></tr>",
                esc(site),
                esc(k)
            );
        }
        o.push_str("</table>");
    }

    o.push_str("<h2>Recent purges</h2>");
    let purges = b.recent_purges();
    if purges.is_empty() {
        o.push_str("<p class=empty>No purges since start.</p>");
    } else {
        o.push_str("<table><tr><th>when</th><th>who</th><th>what</th><th>kind</th><th class=n>objects</th></tr>");
        for p in &purges {
            let _ = write!(
                o,
                "<tr><td title=\"{}\">{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=n>{}</td></tr>",
                httpdate::fmt_http_date(p.at),
                ago(p.at, now),
                esc(&p.who),
                esc(&p.what),
                if p.soft { "soft" } else { "hard" },
                p.objects
            );
        }
        o.push_str("</table>");
    }

    o.push_str("<h2>Scripts</h2>");
    let scripts: Vec<_> = gen.sites.iter().flat_map(|s| s.scripts.iter()).collect();
    if scripts.is_empty() {
        o.push_str("<p class=empty>No scripts loaded.</p>");
    } else {
        o.push_str(
            "<table><tr><th>site</th><th>script</th><th>version</th><th>hooks</th>\
             <th class=n>calls</th><th class=n>p50 µs</th><th class=n>p90 µs</th><th class=n>p99 µs</th></tr>",
        );
        for s in scripts {
            let (p50, p90, p99, calls) = b.script_time(s.id()).map_or(
                ("–".into(), "–".into(), "–".into(), 0),
                |(a, b, c, n)| (a.to_string(), b.to_string(), c.to_string(), n),
            );
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td><code title=\"{}\">{}</code></td><td>{}</td>\
                 <td class=n>{calls}</td><td class=n>{p50}</td><td class=n>{p90}</td><td class=n>{p99}</td></tr>",
                esc(s.site()),
                esc(s.name()),
                esc(s.version()),
                esc(&s.version()[..s.version().len().min(12)]),
                s.hook_names().join(", "),
            );
        }
        o.push_str("</table>");
    }
    o.push_str("<p class=sub>Refreshes every 10 s. Metrics for scraping: <code>/metrics</code>.</p></body></html>\n");
    o
}

/// A round upper bound for a chart's axis: 1, 2 or 5 times a power of ten.
fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * mag)
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    #[test]
    fn series_are_rates_between_samples() {
        let samples = [
            Sample {
                at: at(0),
                requests: 0,
                hits: 0,
                origin: 0,
            },
            Sample {
                at: at(5),
                requests: 10,
                hits: 9,
                origin: 1,
            },
            Sample {
                at: at(10),
                requests: 10,
                hits: 9,
                origin: 1,
            },
            Sample {
                at: at(15),
                requests: 30,
                hits: 20,
                origin: 11,
            },
        ];
        let (ratio, origin) = series(&samples, at(15));
        // No requests in the middle interval: no hit-ratio point there, a zero origin rate.
        assert_eq!(ratio, vec![(10.0, 0.9), (0.0, 0.55)]);
        assert_eq!(origin, vec![(10.0, 0.2), (5.0, 0.0), (0.0, 2.0)]);
    }

    #[test]
    fn axis_bounds_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(0.3), 0.5);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
    }

    #[test]
    fn a_chart_with_hostile_label_stays_markup() {
        let mut o = String::new();
        chart(&mut o, "<script>x</script>", &[(0.0, 0.5)], 1.0, &percent);
        assert!(!o.contains("<script>"));
        assert!(o.starts_with("<svg") && o.ends_with("</svg>"));
    }
}
