//! The disk tier through the real binary: restarts (clean and `kill -9`), memory misses
//! served from disk, damaged files, a full disk, purges after a restart, and `check`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::admin::{metric, purge, scrape_until};
use crate::support::{run_cli, Launch, Origin, Proxy, Reply, Seen, PATIENCE};

/// A site with an admin listener and the disk tier at `disk`; `{memory}` bounds memory.
fn config(disk: &Path, memory: &str, disk_size: &str) -> String {
    format!(
        r#"
[cache]
max_size = "{memory}"
disk = {{ path = "{}", size = "{disk_size}" }}

[admin]
listen = "127.0.0.1:0"
token_file = "admin-token"

[[site]]
name = "shop"
origin = "{{origin}}"
"#,
        disk.display()
    )
}

/// The body the origin sends for `path`: its text repeated to `len` bytes.
fn body_of(path: &str, len: usize) -> String {
    path.repeat(len / path.len() + 1)[..len].to_owned()
}

/// Cached for an hour; `/v` varies on language, `/aged` is 100 s old, `/t/…` is tagged,
/// `/big/N` is N KiB.
fn pages(seen: &Seen, _n: usize) -> Reply {
    let path = seen.path_and_query.clone();
    let lang = seen
        .headers
        .get("accept-language")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = match path.strip_prefix("/big/") {
        Some(kib) => {
            let kib: usize = kib.split('?').next().unwrap().parse().unwrap();
            body_of(&path, kib * 1024)
        }
        None if path == "/v" => format!("page in {lang}"),
        None => body_of(&path, 2000),
    };
    let mut r = Reply::ok(&body).header("cache-control", "max-age=3600");
    if path == "/v" {
        r = r.header("vary", "accept-language");
    }
    if path == "/aged" {
        r = r.header("age", "100");
    }
    if let Some(id) = path.strip_prefix("/t/") {
        r = r.header("surrogate-key", &format!("all-t t-{id}"));
    }
    r
}

/// Files the tier holds now.
fn files(disk: &Path) -> usize {
    std::fs::read_dir(disk.join("objects"))
        .map(|dirs| {
            dirs.flatten()
                .filter_map(|d| std::fs::read_dir(d.path()).ok())
                .map(|f| f.count())
                .sum()
        })
        .unwrap_or(0)
}

fn all_files(disk: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(disk.join("objects"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|f| f.path())
        .collect();
    all.sort();
    all
}

/// Waits until `n` files are on disk (writes are queued behind the responses).
async fn landed(disk: &Path, n: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while files(disk) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} files written",
            files(disk)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM, and the clean exit that finishes queued writes.
pub(crate) async fn stop(mut p: Proxy) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(p.pid() as i32, libc::SIGTERM) };
    assert!(p.exit_status().await, "a clean stop exits 0");
}

/// Starts a proxy and waits until its start-up scan of the disk is done (entries found
/// later than a request would make that request a miss).
pub(crate) async fn start(origin: &Origin, toml: &str) -> Proxy {
    let p = Launch::config(origin, toml).start().await;
    scrape_until(p.admin.unwrap(), &[("tessera_cache_disk_loading", 0.0)]).await;
    p
}

#[tokio::test]
async fn a_restart_keeps_entries_their_variants_and_their_age() {
    let origin = Origin::start(pages).await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let toml = config(&disk, "32MiB", "64MiB");
    let p = start(&origin, &toml).await;
    for path in ["/a", "/b", "/aged"] {
        assert!(!p.get(path, &[]).await.hit());
    }
    for lang in ["en", "fr"] {
        assert!(!p.get("/v", &[("accept-language", lang)]).await.hit());
    }
    stop(p).await;
    assert_eq!(
        files(&disk),
        5,
        "a clean stop leaves every queued write on disk"
    );

    let p = start(&origin, &toml).await;
    for path in ["/a", "/b"] {
        let got = p.get(path, &[]).await;
        assert!(got.hit(), "{path} after a restart: {}", got.cache_status());
        assert_eq!(got.body, body_of(path, 2000));
    }
    for lang in ["fr", "en"] {
        let got = p.get("/v", &[("accept-language", lang)]).await;
        assert!(got.hit());
        assert_eq!(got.body, format!("page in {lang}"), "each variant its own");
    }
    assert!(!p.get("/v", &[("accept-language", "de")]).await.hit());
    let aged = p.get("/aged", &[]).await;
    assert!(aged.hit());
    let age: u64 = aged.h("age").parse().unwrap();
    assert!(
        age >= 100,
        "Age counts from the origin's response, not the restart: {age}"
    );
    assert_eq!(
        origin.count(),
        6,
        "only `de` went to the origin after the restart"
    );
    let m = scrape_until(p.admin.unwrap(), &[]).await;
    assert_eq!(
        metric(&m, "tessera_cache_tier_hits_total{tier=\"disk\"}"),
        Some(5.0)
    );
}

#[tokio::test]
async fn what_memory_cannot_hold_is_served_from_disk() {
    let origin = Origin::start(pages).await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    // 40 objects of 8 KiB in 16 KiB of memory: most live on disk only.
    let p = start(&origin, &config(&disk, "16KiB", "16MiB")).await;
    for i in 0..40 {
        assert!(!p.get(&format!("/big/8?{i}"), &[]).await.hit());
    }
    landed(&disk, 40).await;
    for i in 0..40 {
        let path = format!("/big/8?{i}");
        let got = p.get(&path, &[]).await;
        assert!(got.hit(), "{path}: {}", got.cache_status());
        assert_eq!(got.body, body_of(&path, 8192));
    }
    assert_eq!(origin.count(), 40);
    let m = scrape_until(p.admin.unwrap(), &[]).await;
    let disk_hits = metric(&m, "tessera_cache_tier_hits_total{tier=\"disk\"}").unwrap();
    let memory_hits = metric(&m, "tessera_cache_tier_hits_total{tier=\"memory\"}").unwrap_or(0.0);
    assert_eq!(disk_hits + memory_hits, 40.0);
    assert!(
        disk_hits >= 20.0,
        "memory holds one or two of them: {disk_hits}"
    );
    assert_eq!(
        metric(&m, "tessera_cache_tier_objects{tier=\"disk\"}"),
        Some(40.0)
    );
    assert!(metric(&m, "tessera_cache_evictions_total{tier=\"memory\"}").unwrap() > 0.0);
}

#[tokio::test]
async fn kill_9_during_a_burst_of_writes_leaves_only_right_answers_or_misses() {
    let origin = Origin::start(pages).await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let toml = config(&disk, "256MiB", "256MiB");
    let p = std::sync::Arc::new(start(&origin, &toml).await);
    let paths: Vec<String> = (0..300)
        .map(|i| format!("/big/{}?{i}", 16 + i % 48))
        .collect();
    let mut burst = Vec::new();
    for part in 0..4 {
        let (p, paths) = (p.clone(), paths.clone());
        burst.push(tokio::spawn(async move {
            for path in paths.iter().skip(part).step_by(4) {
                let _ = p.get(path, &[]).await;
            }
        }));
    }
    landed(&disk, 30).await;
    // SAFETY: kill(2) on our own child's pid, mid-burst.
    unsafe { libc::kill(p.pid() as i32, libc::SIGKILL) };
    for b in burst {
        let _ = b.await;
    }
    let before = origin.count();

    let p = start(&origin, &toml).await;
    let mut hits = 0;
    for path in &paths {
        let got = p.get(path, &[]).await;
        assert_eq!(got.status, 200);
        let kib: usize = path[5..].split('?').next().unwrap().parse().unwrap();
        assert_eq!(got.body, body_of(path, kib * 1024), "{path} after kill -9");
        hits += usize::from(got.hit());
    }
    assert!(
        hits >= 30,
        "what landed before the kill survived: {hits} hits"
    );
    assert_eq!(
        origin.count() - before,
        300 - hits,
        "every other request was a miss"
    );
}

#[tokio::test]
async fn damaged_files_are_dropped_and_counted_never_served() {
    let origin = Origin::start(pages).await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let toml = config(&disk, "32MiB", "64MiB");
    let p = start(&origin, &toml).await;
    for path in ["/a", "/b", "/c", "/d"] {
        p.get(path, &[]).await;
    }
    stop(p).await;
    let f = all_files(&disk);
    assert_eq!(f.len(), 4);
    // A bit flipped in a body, a torn file, a file of noise, and one left alone.
    let mut bytes = std::fs::read(&f[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&f[0], bytes).unwrap();
    let bytes = std::fs::read(&f[1]).unwrap();
    std::fs::write(&f[1], &bytes[..bytes.len() - 100]).unwrap();
    std::fs::write(&f[2], vec![0x5a; 3000]).unwrap();

    let p = start(&origin, &toml).await;
    let mut hits = 0;
    for path in ["/a", "/b", "/c", "/d"] {
        let got = p.get(path, &[]).await;
        assert_eq!(
            got.body,
            body_of(path, 2000),
            "{path}: never a damaged body"
        );
        hits += usize::from(got.hit());
    }
    assert_eq!(hits, 1, "only the untouched file is served");
    assert_eq!(origin.count(), 4 + 3);
    let m = scrape_until(
        p.admin.unwrap(),
        &[("tessera_cache_disk_damaged_total", 3.0)],
    )
    .await;
    assert_eq!(metric(&m, "tessera_cache_disk_damaged_total"), Some(3.0));
    // Refetched, they are whole on disk again.
    for path in ["/a", "/b", "/c", "/d"] {
        assert!(p.get(path, &[]).await.hit());
    }
}

#[tokio::test]
async fn a_full_disk_degrades_to_memory_and_requests_keep_being_answered() {
    let origin = Origin::start(pages).await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    // A 1 MiB tmpfs of our own (a user and mount namespace: no privileges needed). Once the
    // proxy runs, something else fills it (on the test's signal), as another tenant of a
    // real disk would: the tier's own bound cannot see that coming.
    let (fill, filled) = (dir.path().join("fill"), dir.path().join("filled"));
    let mount = format!(
        "mount -t tmpfs -o size=1m,mode=0700 tmpfs {disk} || exit 1; \
         (while [ ! -e {fill} ]; do sleep 0.05; done; \
          dd if=/dev/zero of={disk}/filler bs=4k count=1000 2>/dev/null; touch {filled}) & \
         exec \"$0\" \"$@\"",
        disk = disk.display(),
        fill = fill.display(),
        filled = filled.display()
    );
    let p = Launch::config(&origin, &config(&disk, "32MiB", "900KiB"))
        .through(&[
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            &mount,
        ])
        .capture_logs()
        .start()
        .await;
    scrape_until(p.admin.unwrap(), &[("tessera_cache_disk_loading", 0.0)]).await;
    std::fs::write(&fill, "").unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while !filled.exists() {
        assert!(std::time::Instant::now() < deadline, "the filler ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let paths: Vec<String> = (0..400).map(|i| format!("/big/5?{i}")).collect();
    for path in &paths {
        let got = p.get(path, &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, body_of(path, 5 * 1024));
    }
    let m = scrape_until(p.admin.unwrap(), &[("tessera_cache_disk_up", 0.0)]).await;
    assert_eq!(metric(&m, "tessera_cache_disk_up"), Some(0.0), "{m}");
    assert!(metric(&m, "tessera_cache_disk_errors_total{op=\"write\"}").unwrap() >= 1.0);
    // Memory still serves every one of them.
    for path in &paths {
        let got = p.get(path, &[]).await;
        assert!(got.hit(), "{path}");
        assert_eq!(got.body, body_of(path, 5 * 1024));
    }
    assert_eq!(origin.count(), 400);
    assert!(
        p.logs()
            .iter()
            .any(|l| l.contains("serving from memory only")),
        "the degradation is logged"
    );
}

#[tokio::test]
async fn purges_reach_disk_entries_after_a_restart() {
    let origin = Origin::start(pages).await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let toml = config(&disk, "32MiB", "64MiB");
    let p = start(&origin, &toml).await;
    let paths = ["/t/1", "/t/2", "/t/3", "/p/1", "/p/2", "/q", "/s"];
    for path in paths {
        p.get(path, &[]).await;
    }
    stop(p).await;

    let p = start(&origin, &toml).await;
    let admin = p.admin.unwrap();
    assert_eq!(purge(admin, r#"{"tag":"t-1"}"#).await, 1);
    assert_eq!(purge(admin, r#"{"prefix":"http://shop.test/p/"}"#).await, 2);
    assert_eq!(purge(admin, r#"{"url":"http://shop.test/q"}"#).await, 1);
    assert_eq!(purge(admin, r#"{"tag":"t-2","soft":true}"#).await, 1);
    stop(p).await;

    // A third run: the hard purges removed files, the soft one is recorded in its file.
    let p = start(&origin, &toml).await;
    let before = origin.count();
    let mut served = Vec::new();
    for path in paths {
        served.push((path, p.get(path, &[]).await.hit()));
    }
    assert_eq!(
        served,
        vec![
            ("/t/1", false),
            ("/t/2", false),
            ("/t/3", true),
            ("/p/1", false),
            ("/p/2", false),
            ("/q", false),
            ("/s", true),
        ]
    );
    assert_eq!(origin.count() - before, 5);
    assert_eq!(purge(p.admin.unwrap(), r#"{"site":"shop"}"#).await, 7);
    for path in paths {
        assert!(
            !p.get(path, &[]).await.hit(),
            "{path} after purging the site"
        );
    }
    stop(p).await;
    let p = start(&origin, &toml).await;
    assert_eq!(purge(p.admin.unwrap(), r#"{"all":true}"#).await, 7);
    stop(p).await;
    assert_eq!(files(&disk), 0, "purging all leaves no file behind");
}

#[test]
fn check_names_the_key_when_the_disk_path_or_size_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    let cases = [
        (
            format!(r#"disk = {{ path = "{}", size = "1MiB" }}"#, link.display()),
            "key `cache.disk.path`",
            "is a symbolic link",
        ),
        (
            format!(r#"disk = {{ path = "{}", size = "1GiB" }}"#, file.display()),
            "tessera.toml:3: key `cache.disk.path`",
            "is not a directory",
        ),
        (
            format!(r#"disk = {{ path = "{}", size = "1GiB" }}"#, open.display()),
            "key `cache.disk.path`",
            "chmod 700",
        ),
        (
            format!(
                r#"disk = {{ path = "{}/new", size = "100000000GiB" }}"#,
                dir.path().display()
            ),
            "key `cache.disk.size`",
            "free",
        ),
        (
            format!(r#"disk = {{ path = "{}/new" }}"#, dir.path().display()),
            "key `cache.disk.size`",
            "required",
        ),
        (
            format!(
                r#"disk = {{ path = "{}/new", size = "1GiB", fast = true }}"#,
                dir.path().display()
            ),
            "tessera.toml:3",
            "fast",
        ),
    ];
    for (line, place, why) in cases {
        let path = dir.path().join("tessera.toml");
        std::fs::write(
            &path,
            format!("[cache]\nmax_size = \"1MiB\"\n{line}\n[[site]]\nname = \"s\"\norigin = \"http://127.0.0.1:1\"\n"),
        )
        .unwrap();
        let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        assert!(!ok, "{line} accepted");
        assert!(out.contains(place) && out.contains(why), "{line}: {out}");
    }
    assert!(!dir.path().join("new").exists(), "check creates nothing");
}

#[tokio::test]
async fn large_bodies_stream_from_disk_and_a_damaged_one_is_cut_not_served() {
    let origin = Origin::start(pages).await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let toml = config(&disk, "1MiB", "64MiB");
    let p = start(&origin, &toml).await;
    let (a, b) = ("/big/3072?a", "/big/3072?b");
    for path in [a, b] {
        assert_eq!(p.get(path, &[]).await.body.len(), 3 << 20);
    }
    stop(p).await;
    // A bit flipped in the middle of b's body.
    let b_file = all_files(&disk)
        .into_iter()
        .find(|f| {
            let bytes = std::fs::read(f).unwrap();
            bytes.windows(b.len()).any(|w| w == b.as_bytes())
        })
        .unwrap_or_else(|| {
            let seen: Vec<(PathBuf, u64)> = all_files(&disk)
                .into_iter()
                .map(|f| {
                    let n = std::fs::metadata(&f).unwrap().len();
                    (f, n)
                })
                .collect();
            panic!("no file holds {b}: {seen:?}")
        });
    let mut bytes = std::fs::read(&b_file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&b_file, bytes).unwrap();

    let p = start(&origin, &toml).await;
    let got = p.get(a, &[]).await;
    assert!(got.hit(), "{}", got.cache_status());
    assert_eq!(got.body, body_of(a, 3 << 20));
    let part = p.get(a, &[("range", "bytes=1000000-1000099")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, body_of(a, 3 << 20)[1_000_000..1_000_100]);
    let head = p.send("HEAD", a, &[]).await;
    assert_eq!(head.h("content-length"), (3u64 << 20).to_string());

    let cut = crate::support::raw(
        p.addr,
        format!("GET {b} HTTP/1.1\r\nhost: shop.test\r\nconnection: close\r\n\r\n").as_bytes(),
        PATIENCE,
    )
    .await;
    let (head, body) = cut.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("content-length: {}", 3 << 20)),
        "{head}"
    );
    assert!(
        body.len() < 3 << 20,
        "the damaged body is cut short, never delivered whole"
    );
    let again = p.get(b, &[]).await;
    assert!(!again.hit(), "the damaged entry was dropped");
    assert_eq!(again.body, body_of(b, 3 << 20));
    assert_eq!(origin.count(), 3);
    let m = scrape_until(
        p.admin.unwrap(),
        &[("tessera_cache_disk_damaged_total", 1.0)],
    )
    .await;
    assert_eq!(metric(&m, "tessera_cache_disk_damaged_total"), Some(1.0));
}

#[tokio::test]
async fn one_hit_wonders_do_not_flush_the_hot_set_from_memory() {
    let origin = Origin::start(pages).await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    // Memory for about 70 of these objects (8 KiB, weighed with room for compressed
    // copies): the store's probation queue is a share of it and must hold a few.
    let p = start(&origin, &config(&disk, "1MiB", "16MiB")).await;
    let admin = p.admin.unwrap();
    let hot: Vec<String> = (0..20).map(|i| format!("/big/8?hot{i}")).collect();
    for _ in 0..5 {
        for path in &hot {
            p.get(path, &[]).await;
        }
    }
    // A crawler's scan: 300 objects, each asked once, four times what memory holds.
    for i in 0..300 {
        assert!(!p.get(&format!("/big/8?scan{i}"), &[]).await.hit());
    }
    let memory_hits = |m: &str| metric(m, "tessera_cache_tier_hits_total{tier=\"memory\"}");
    let before = memory_hits(&scrape_until(admin, &[]).await).unwrap();
    for path in &hot {
        assert!(p.get(path, &[]).await.hit());
    }
    let after = memory_hits(&scrape_until(admin, &[]).await).unwrap();
    assert_eq!(
        after - before,
        20.0,
        "the hot objects are still in memory (the scan went through probation and out)"
    );
    assert_eq!(origin.count(), 320);
}

#[tokio::test]
async fn two_processes_never_share_one_disk_directory() {
    let origin = Origin::start(pages).await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let toml = config(&disk, "1MiB", "16MiB");
    let first = start(&origin, &toml).await;
    let second = Launch::config(&origin, &toml);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--config", second.config_path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .env("XDG_CACHE_HOME", crate::support::compiled_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the second process gives up instead of serving")
        .unwrap();
    assert!(!status.success());
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut err)
        .await
        .unwrap();
    assert!(
        err.contains("key `cache.disk.path`") && err.contains("in use by another tessera process"),
        "{err}"
    );
    assert!(
        first.get("/a", &[]).await.status == 200,
        "the first one is unharmed"
    );
}

#[tokio::test]
async fn a_new_variant_or_a_refresh_replaces_without_counting_an_eviction() {
    let origin = Origin::start(pages).await;
    let dir = tempfile::tempdir().unwrap();
    let p = start(&origin, &config(&dir.path().join("disk"), "16MiB", "16MiB")).await;
    // Each new variant stores the key's value anew, the earlier variants carried over.
    for lang in ["en", "de", "fr"] {
        let got = p.get("/v", &[("accept-language", lang)]).await;
        assert_eq!(got.body, format!("page in {lang}"));
    }
    for lang in ["en", "de", "fr"] {
        assert!(
            p.get("/v", &[("accept-language", lang)]).await.hit(),
            "{lang}"
        );
    }
    let m = scrape_until(p.admin.unwrap(), &[]).await;
    let evicted = metric(&m, "tessera_cache_evictions_total{tier=\"memory\"}");
    assert_eq!(
        evicted.unwrap_or(0.0),
        0.0,
        "nothing was pushed out of 16 MiB"
    );
    assert_eq!(origin.count(), 3);
}
