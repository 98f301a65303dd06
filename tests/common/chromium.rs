//! Real headless Chromium for the browser tests: load a page as a person would, read back
//! its DOM (`--dump-dom`) or take a screenshot, and check that the page logged nothing to
//! its console and asked nothing of any host but the node.
//!
//! Chromium is `$CHROMIUM` or `/usr/bin/chromium` (Debian's `chromium`, installed by
//! `scripts/deps.sh`); a missing browser fails the test with that instruction.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

/// The headless browser.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "no Chromium at {} (apt-get install chromium, or set CHROMIUM)",
        path.display()
    );
    path
}

/// What one headless Chromium run gave.
pub struct Run {
    /// The DOM after the page's script ran (with `--dump-dom`).
    pub dom: String,
    /// Chromium's log: console messages among others.
    pub log: String,
    /// Chromium's network log (JSON).
    pub netlog: String,
}

/// Loads `url` in a fresh headless Chromium for 15 s of (virtual) page time: its DOM
/// dumped (`screenshot: None`) or a screenshot taken at `(path, width, height)`.
pub async fn run_chromium(url: &str, screenshot: Option<(&Path, u32, u32)>) -> Run {
    let profile = tempfile::tempdir().unwrap();
    let netlog = profile.path().join("netlog.json");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=15000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--log-net-log={}", netlog.display()))
    .kill_on_drop(true);
    match screenshot {
        Some((path, w, h)) => {
            cmd.arg(format!("--screenshot={}", path.display()))
                .arg(format!("--window-size={w},{h}"));
        }
        None => {
            cmd.arg("--dump-dom");
        }
    }
    cmd.arg(url);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("Chromium finishes within 120 s")
        .expect("Chromium runs");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "Chromium failed: {log}");
    let netlog = std::fs::read_to_string(&netlog).expect("Chromium's network log");
    Run {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        log,
        netlog,
    }
}

/// Every URL the page itself asked for: the network log's requests whose initiator is
/// `origin` (Chromium's own background requests, to its update and account services, have
/// none). The log also names the page's top-level URL, loaded by the test.
fn page_requests(netlog: &str, origin: &str) -> BTreeSet<String> {
    let log: Value = serde_json::from_str(netlog).expect("a complete network log");
    let origin = origin.trim_end_matches('/');
    log["events"]
        .as_array()
        .expect("network log events")
        .iter()
        .filter(|e| e["params"]["initiator"] == origin)
        .filter_map(|e| e["params"]["url"].as_str())
        .map(str::to_owned)
        .collect()
}

impl Run {
    /// The page wrote nothing to the console (no script error, no refused load: it logs
    /// nothing of its own) and asked nothing of any host but the node.
    pub fn assert_clean(&self, origin: &str) {
        let console: Vec<&str> = self
            .log
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .collect();
        assert!(console.is_empty(), "console messages: {console:#?}");
        let urls = page_requests(&self.netlog, origin);
        assert!(
            urls.contains(&format!("{origin}assets/dashboard.js")),
            "the page's script was not loaded: {urls:?}"
        );
        for url in &urls {
            assert!(
                url.starts_with(origin),
                "the page requested {url}, not from {origin}"
            );
        }
    }

    /// The opening tag of the element whose attributes contain `needle`.
    pub fn tag(&self, needle: &str) -> &str {
        let at = self
            .dom
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle} in the page:\n{}", self.dom));
        let start = self.dom[..at].rfind('<').unwrap();
        let end = at + self.dom[at..].find('>').unwrap();
        &self.dom[start..=end]
    }

    /// Attribute `name` of the element whose attributes contain `needle`.
    pub fn attr(&self, needle: &str, name: &str) -> &str {
        let tag = self.tag(needle);
        value_of(tag, name).unwrap_or_else(|| panic!("no {name} in {tag}"))
    }

    /// The first attribute `name` after `needle` (in a row: one of its cells').
    pub fn attr_after(&self, needle: &str, name: &str) -> &str {
        let at = self
            .dom
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle} in the page:\n{}", self.dom));
        value_of(&self.dom[at..], name).unwrap_or_else(|| panic!("no {name} after {needle}"))
    }
}

/// The value of the first attribute `name` in `html`.
pub fn value_of<'a>(html: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let from = html.find(&key)? + key.len();
    Some(&html[from..from + html[from..].find('"')?])
}

/// Text as the serialized DOM escapes it.
pub fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&nbsp;")
}

/// Where screenshots go: `$CARGO_TARGET_DIR/artifacts/` (else `target/artifacts/`).
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
