//! Readiness: whether the node hands out work, and if not, why.
//!
//! Work is worth mining only when it can become a valid block or share: litecoind answers
//! on the right chain, synced, with a template; and the share chain is in step with the
//! network. Each of these is a named [`Condition`] set by whoever watches it (the daemon
//! watcher, the share-chain network); Stratum serves while all are ready and is paused with
//! their reasons otherwise.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::daemon::watcher::{DaemonState, DaemonStatus};
use crate::p2p::SyncState;

/// Name of the readiness condition the daemon watcher feeds.
pub const DAEMON_CONDITION: &str = "litecoind";
/// Name of the readiness condition of share-chain sync (set by the share-chain network
/// through [`ReadinessHandle::set_sync_ready`]; ready until it says otherwise).
pub const SYNC_CONDITION: &str = "share chain";

/// One thing the node needs before its work can become a valid block or share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub name: &'static str,
    pub ready: bool,
    /// What the state is: why it is not ready, or what ready means here.
    pub reason: String,
}

/// Whether the node hands out work: ready when every named condition is.
///
/// Stratum serves miners only while the node is ready; otherwise it is paused with the
/// reasons of the conditions that are not (see [`crate::stratum::Availability`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    conditions: Vec<Condition>,
}

impl Readiness {
    /// A starting node: litecoind not heard from yet, share-chain sync ready.
    pub fn starting() -> Self {
        Readiness {
            conditions: vec![
                Condition {
                    name: DAEMON_CONDITION,
                    ready: false,
                    reason: "waiting for its first answer".into(),
                },
                Condition {
                    name: SYNC_CONDITION,
                    ready: true,
                    reason: "ready".into(),
                },
            ],
        }
    }

    pub fn is_ready(&self) -> bool {
        self.conditions.iter().all(|c| c.ready)
    }

    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    pub fn condition(&self, name: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.name == name)
    }

    /// Why the node is not ready (`name: reason` of each such condition), or `None`.
    pub fn blocker(&self) -> Option<String> {
        let reasons: Vec<String> = self
            .conditions
            .iter()
            .filter(|c| !c.ready)
            .map(|c| format!("{}: {}", c.name, c.reason))
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Sets a condition (adding it if new); whether anything changed.
    pub fn set(&mut self, name: &'static str, ready: bool, reason: String) -> bool {
        match self.conditions.iter_mut().find(|c| c.name == name) {
            Some(c) if c.ready == ready && c.reason == reason => false,
            Some(c) => {
                c.ready = ready;
                c.reason = reason;
                true
            }
            None => {
                self.conditions.push(Condition {
                    name,
                    ready,
                    reason,
                });
                true
            }
        }
    }
}

/// Sets and watches the node's [`Readiness`]; cheap to clone and hand to whoever owns a
/// condition.
#[derive(Clone)]
pub struct ReadinessHandle {
    tx: Arc<watch::Sender<Readiness>>,
}

impl Default for ReadinessHandle {
    fn default() -> Self {
        ReadinessHandle {
            tx: Arc::new(watch::Sender::new(Readiness::starting())),
        }
    }
}

impl ReadinessHandle {
    /// Sets condition `name`; a change is logged once (a warning when it stops being ready).
    pub fn set(&self, name: &'static str, ready: bool, reason: impl Into<String>) {
        let reason = reason.into();
        let changed = self
            .tx
            .send_if_modified(|r| r.set(name, ready, reason.clone()));
        if changed {
            if ready {
                info!(condition = name, "{name} is ready: {reason}");
            } else {
                warn!(condition = name, "{name} is not ready: {reason}");
            }
        }
    }

    /// The share-chain sync condition: `false` while the node is catching up with its
    /// peers (Stratum serves no work meanwhile), with the reason to show.
    pub fn set_sync_ready(&self, ready: bool, reason: impl Into<String>) {
        self.set(SYNC_CONDITION, ready, reason);
    }

    pub fn current(&self) -> Readiness {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Readiness> {
        self.tx.subscribe()
    }
}

/// Keeps the share-chain condition of readiness in step with the network's sync state:
/// miners are served while the node is alone or synced, not while it catches up (work on a
/// stale tip would only make orphans).
pub(super) async fn follow_sync(mut sync: watch::Receiver<SyncState>, readiness: ReadinessHandle) {
    loop {
        let state = sync.borrow_and_update().clone();
        readiness.set_sync_ready(state.may_serve(), state.to_string());
        if sync.changed().await.is_err() {
            return;
        }
    }
}

/// What litecoind's state means for work: ready, or the reason it is not.
pub fn daemon_condition(status: &DaemonStatus) -> (bool, String) {
    match &status.state {
        DaemonState::Ready if status.template.is_some() => (true, "ready".into()),
        DaemonState::Ready => (false, "no block template yet".into()),
        DaemonState::Connecting => (false, "waiting for its first answer".into()),
        DaemonState::Unreachable => (
            false,
            "unreachable (stopped, restarting, or a wrong RPC address)".into(),
        ),
        DaemonState::Unauthorized => (
            false,
            "refused the RPC credentials (wrong user, password or cookie)".into(),
        ),
        DaemonState::WrongChain { expected, found } => (
            false,
            format!("runs the {found} chain, this node needs {expected}"),
        ),
        DaemonState::WarmingUp(message) => (false, format!("starting up: {message}")),
        DaemonState::Syncing => (false, "still syncing the block chain".into()),
        DaemonState::NoTemplate(reason) => (false, format!("serves no block template: {reason}")),
        DaemonState::Saturated(detail) => (
            false,
            format!(
                "RPC saturated ({detail}): raise litecoind's -rpcthreads and -rpcworkqueue, \
                 and stop clients holding its RPC threads (e.g. stray long polls)"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn status(state: DaemonState) -> DaemonStatus {
        DaemonStatus {
            state,
            template: None,
            template_seq: 0,
        }
    }

    #[test]
    fn readiness_combines_named_conditions() {
        let mut r = Readiness::starting();
        assert!(!r.is_ready());
        assert_eq!(
            r.blocker().as_deref(),
            Some("litecoind: waiting for its first answer")
        );
        assert!(r.set(DAEMON_CONDITION, true, "ready".into()));
        assert!(r.is_ready());
        assert_eq!(r.blocker(), None);
        // Setting the same state again is no change.
        assert!(!r.set(DAEMON_CONDITION, true, "ready".into()));
        assert!(r.set(SYNC_CONDITION, false, "catching up: 10 of 80 shares".into()));
        assert!(r.set(DAEMON_CONDITION, false, "unreachable".into()));
        assert_eq!(
            r.blocker().as_deref(),
            Some("litecoind: unreachable; share chain: catching up: 10 of 80 shares")
        );
        assert_eq!(r.condition(SYNC_CONDITION).map(|c| c.ready), Some(false));
    }

    #[test]
    fn the_handle_publishes_changes() {
        let handle = ReadinessHandle::default();
        let mut rx = handle.subscribe();
        rx.borrow_and_update();
        handle.set_sync_ready(false, "syncing");
        assert!(rx.has_changed().unwrap());
        assert!(!rx.borrow_and_update().is_ready());
        handle.set_sync_ready(false, "syncing");
        assert!(!rx.has_changed().unwrap(), "no change, no wake-up");
        assert_eq!(
            handle
                .current()
                .condition(SYNC_CONDITION)
                .map(|c| c.reason.clone()),
            Some("syncing".to_string())
        );
    }

    #[tokio::test]
    async fn miners_wait_while_the_share_chain_syncs() {
        let handle = ReadinessHandle::default();
        handle.set(DAEMON_CONDITION, true, "ready");
        let (sync_tx, sync_rx) = watch::channel(SyncState::Alone);
        let mut rx = handle.subscribe();
        let task = tokio::spawn(follow_sync(sync_rx, handle.clone()));
        let until = |want: bool| {
            let mut rx = rx.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    rx.wait_for(|r| r.is_ready() == want),
                )
                .await
                .expect("readiness follows the sync state")
                .expect("the handle lives")
                .clone()
            }
        };
        // Alone: a lone node mines its own chain.
        until(true).await;
        let peer = p2pool_network::PeerId::random();
        sync_tx.send_replace(SyncState::Syncing {
            peer,
            received: 128,
            needed: Some(8647),
        });
        let paused = until(false).await;
        let reason = paused.blocker().unwrap();
        assert!(reason.contains("128 shares of at least 8647"), "{reason}");
        sync_tx.send_replace(SyncState::Synced);
        until(true).await;
        rx.borrow_and_update();
        task.abort();
    }

    #[test]
    fn every_daemon_state_has_a_reason() {
        let states = [
            DaemonState::Connecting,
            DaemonState::Ready,
            DaemonState::Unreachable,
            DaemonState::Unauthorized,
            DaemonState::WrongChain {
                expected: "regtest".into(),
                found: "main".into(),
            },
            DaemonState::WarmingUp("Loading block index".into()),
            DaemonState::Syncing,
            DaemonState::NoTemplate("not connected".into()),
            DaemonState::Saturated("daemon call timed out".into()),
        ];
        for state in states {
            let (ready, reason) = daemon_condition(&status(state.clone()));
            assert!(!ready, "{state:?} without a template is not ready");
            assert!(!reason.is_empty());
        }
        let (_, reason) = daemon_condition(&status(DaemonState::Unauthorized));
        assert!(reason.contains("credentials"), "{reason}");
        let (_, reason) = daemon_condition(&status(DaemonState::Saturated("x".into())));
        assert!(
            reason.contains("-rpcthreads") && reason.contains("-rpcworkqueue"),
            "{reason}"
        );
        let (_, reason) = daemon_condition(&status(DaemonState::WrongChain {
            expected: "regtest".into(),
            found: "main".into(),
        }));
        assert!(
            reason.contains("main") && reason.contains("regtest"),
            "{reason}"
        );
    }
}
