//! The alert webhook against real HTTP receivers on 127.0.0.1: failed deliveries are
//! retried (4 attempts, waits of 1, 2, 4 s), a receiver that hangs is cut off after 5 s and
//! retried, an alert refused 4 times is dropped and the next one still goes out, and a
//! receiver that never answers never holds up raising alerts.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use p2pool::alerts::Alerts;
use serde_json::Value;
use tokio::sync::mpsc;

/// What the receiver does with one POST.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    Fail,
    /// Answers 200, but only after this long.
    Hang(Duration),
}

/// One POST the receiver got: when (since the receiver started), its attempt number for
/// that alert id, and the alert.
type Received = (Duration, u32, Value);

type Policy = fn(id: u64, attempt: u32) -> Answer;

#[derive(Clone)]
struct Receiver {
    started: Instant,
    policy: Policy,
    attempts: Arc<Mutex<std::collections::HashMap<u64, u32>>>,
    tx: mpsc::UnboundedSender<Received>,
}

/// An HTTP receiver on a free port answering each alert's n-th POST as `policy` says.
async fn receiver(policy: Policy) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Receiver {
        started: Instant::now(),
        policy,
        attempts: Arc::default(),
        tx,
    };
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(r): State<Receiver>, Json(alert): Json<Value>| async move {
                    let id = alert["id"].as_u64().unwrap();
                    let attempt = {
                        let mut attempts = r.attempts.lock().unwrap();
                        let n = attempts.entry(id).or_default();
                        *n += 1;
                        *n
                    };
                    let _ = r.tx.send((r.started.elapsed(), attempt, alert));
                    match (r.policy)(id, attempt) {
                        Answer::Ok => StatusCode::OK,
                        Answer::Fail => StatusCode::INTERNAL_SERVER_ERROR,
                        Answer::Hang(d) => {
                            tokio::time::sleep(d).await;
                            StatusCode::OK
                        }
                    }
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

/// The first `n` POSTs (within `limit`), then any more that come within `quiet` of the
/// last (longer than the next retry would take, so a surplus attempt is seen).
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    n: usize,
    limit: Duration,
    quiet: Duration,
) -> Vec<Received> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(r)) => got.push(r),
            _ => panic!("only {} of {n} POSTs in {limit:?}: {got:?}", got.len()),
        }
    }
    while let Ok(Some(r)) = tokio::time::timeout(quiet, rx.recv()).await {
        got.push(r);
    }
    got
}

fn raise(alerts: &Alerts, subject: &str) {
    alerts.raise(
        p2pool::api::now_secs(),
        "worker_offline",
        subject.into(),
        format!("worker {subject} has submitted nothing for 600 s"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_alert_on_the_third_attempt() {
    let (url, mut rx) = receiver(|_, attempt| {
        if attempt <= 2 {
            Answer::Fail
        } else {
            Answer::Ok
        }
    })
    .await;
    let alerts = Alerts::with_webhook(url);
    raise(&alerts, "a.rig1");
    // Attempts at 0, 1 and 3 s; then nothing more (the third was accepted; a fourth
    // attempt would come 4 s later).
    let got = collect(
        &mut rx,
        3,
        Duration::from_secs(5),
        Duration::from_millis(4_500),
    )
    .await;
    let attempts: Vec<u32> = got.iter().map(|(_, n, _)| *n).collect();
    assert_eq!(attempts, [1, 2, 3], "{got:?}");
    let sent = serde_json::to_value(&alerts.newest(1)[0]).unwrap();
    for (_, _, alert) in &got {
        assert_eq!(alert, &sent, "each attempt carries the same alert");
    }
    assert_eq!(sent["subject"], "a.rig1");
    let gap = |i: usize| got[i].0 - got[i - 1].0;
    assert!(
        gap(1) >= Duration::from_millis(900) && gap(1) < Duration::from_millis(1800),
        "{got:?}"
    );
    assert!(
        gap(2) >= Duration::from_millis(1900) && gap(2) < Duration::from_millis(2800),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_refused_four_times_is_dropped_and_the_next_one_delivered() {
    // Alert 1 is always refused; the others accepted.
    let (url, mut rx) = receiver(|id, _| if id == 1 { Answer::Fail } else { Answer::Ok }).await;
    let alerts = Alerts::with_webhook(url);
    raise(&alerts, "a.rig1");
    raise(&alerts, "a.rig2");
    let got = collect(
        &mut rx,
        5,
        Duration::from_secs(10),
        Duration::from_millis(1_500),
    )
    .await;
    let seen: Vec<(u64, u32)> = got
        .iter()
        .map(|(_, n, a)| (a["id"].as_u64().unwrap(), *n))
        .collect();
    // Four attempts (at 0, 1, 3, 7 s), then the next alert, once.
    assert_eq!(seen, [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1)], "{got:?}");
    let last_retry = got[3].0 - got[0].0;
    assert!(
        last_retry >= Duration::from_millis(6_800) && last_retry < Duration::from_millis(8_500),
        "{got:?}"
    );
    assert_eq!(got[4].2["subject"], "a.rig2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_hanging_past_the_timeout_is_retried() {
    // The first POST hangs 20 s (past the 5 s timeout); the second is answered at once.
    let (url, mut rx) = receiver(|_, attempt| {
        if attempt == 1 {
            Answer::Hang(Duration::from_secs(20))
        } else {
            Answer::Ok
        }
    })
    .await;
    let alerts = Alerts::with_webhook(url);
    raise(&alerts, "a.rig1");
    let got = collect(
        &mut rx,
        2,
        Duration::from_secs(9),
        Duration::from_millis(2_500),
    )
    .await;
    let attempts: Vec<u32> = got.iter().map(|(_, n, _)| *n).collect();
    assert_eq!(attempts, [1, 2], "{got:?}");
    // Cut off after 5 s, then a wait of 1 s.
    let retried_after = got[1].0 - got[0].0;
    assert!(
        retried_after >= Duration::from_millis(5_900)
            && retried_after < Duration::from_millis(7_500),
        "{got:?}"
    );
    assert_eq!(got[1].2["id"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_never_holds_up_alerts() {
    // Accepts connections and never reads or answers.
    let (url, connections) = common::pool::silent_receiver().await;
    let alerts = Alerts::with_webhook(url);
    raise(&alerts, "a.first");
    // The first delivery is under way (and hangs).
    let start = Instant::now();
    while connections.load(Ordering::Relaxed) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no delivery tried"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // More alerts than the webhook queue holds: raising never waits for the receiver.
    let start = Instant::now();
    for i in 0..1_500 {
        raise(&alerts, &format!("a.rig{i}"));
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "raising 1,500 alerts took {took:?}"
    );
    assert_eq!(alerts.counts()["worker_offline"], 1_501);
    let newest = alerts.newest(500);
    assert_eq!(newest.len(), 500);
    assert_eq!(newest[0].subject, "a.rig1499");
    assert_eq!(newest[0].id, 1_501);
    // Still delivering to nobody: one connection, held.
    assert_eq!(connections.load(Ordering::Relaxed), 1);
}
