//! `p2pool run` without litecoind credentials, the real binary against a real regtest
//! litecoind: it finds litecoind's cookie in its default datadir under `$HOME` and reaches
//! the daemon; with no cookie there, it exits with an error naming the file it tried.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::litecoind::{free_port, RegtestPair};

/// `p2pool run` on regtest with no credential flags, `$HOME` set to `home`.
fn p2pool_run(home: &Path, rpc_port: u16, daemon_p2p: u16, api_port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2pool"));
    cmd.args([
        "run",
        "--network",
        "litecoin-regtest",
        "--no-p2p",
        "--stratum",
        "127.0.0.1:0",
    ])
    .arg("--datadir")
    .arg(home.join("p2pool-data"))
    .arg("--daemon-rpc")
    .arg(format!("http://127.0.0.1:{rpc_port}"))
    .arg("--daemon-p2p")
    .arg(format!("127.0.0.1:{daemon_p2p}"))
    .arg("--rpc")
    .arg(format!("127.0.0.1:{api_port}"))
    .env("HOME", home)
    .env("RUST_LOG", "info")
    .stdin(Stdio::null());
    cmd
}

/// Kills the child when dropped (a failed assertion must not leave a node running).
struct Running(Option<Child>);

impl Running {
    /// Kills it and returns what it printed.
    fn finish(mut self) -> Output {
        let mut child = self.0.take().unwrap();
        let _ = child.kill();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn getinfo(api_port: u16) -> Option<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "getinfo", "params": []});
    let answer: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{api_port}/"))
        .json(&body)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(answer["result"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_credentials_uses_litecoinds_default_cookie_or_names_it() {
    let pair = RegtestPair::start().await;
    let home = tempfile::tempdir().unwrap();
    let expected = home.path().join(".litecoin/regtest/.cookie");

    // No cookie in the default datadir: an error naming the file tried, at once.
    let api_port = free_port();
    let start = Instant::now();
    let out = p2pool_run(home.path(), pair.a.rpc_port, pair.a.p2p_port, api_port)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "it ran without credentials: {stderr}"
    );
    assert!(
        stderr.contains(&expected.display().to_string()),
        "the error names {}: {stderr}",
        expected.display()
    );
    assert!(stderr.contains("--daemon-cookie"), "{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );

    // litecoind's cookie where a stock litecoind on regtest writes it (a link to the
    // running daemon's, as `~/.litecoin` would hold it): the node reaches litecoind.
    std::fs::create_dir_all(expected.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(pair.a.cookie_path(), &expected).unwrap();
    let api_port = free_port();
    let child = p2pool_run(home.path(), pair.a.rpc_port, pair.a.p2p_port, api_port)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = Running(Some(child));
    let deadline = Instant::now() + Duration::from_secs(60);
    let info = loop {
        if let Some(info) = getinfo(api_port).await {
            if info["daemon"]["ready"] == true {
                break info;
            }
        }
        if Instant::now() > deadline {
            let out = running.finish();
            panic!(
                "the node did not reach litecoind in 60 s\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(info["daemon"]["state"], "Ready", "{info}");
    // The height litecoind itself reports: it is that daemon the node talks to.
    let height = pair.block_count().await;
    assert_eq!(
        info["daemon"]["height"].as_u64(),
        Some(height + 1),
        "{info}"
    );
    let out = running.finish();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("using litecoind's default cookie")
            && log.contains(&expected.display().to_string()),
        "the log says which cookie it used: {log}"
    );
}
