//! Progress of long work, drawn only on a terminal: a spinner while the node starts (loading
//! the share chain from its store, reaching the daemons), and a bar while it catches up with
//! or joins the share chain. When stderr is not a terminal (a file, journald) nothing is
//! drawn: the log lines say the same, without escape codes.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use crate::p2p::SyncState;

/// Whether progress is drawn: stderr is a terminal.
pub fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A spinner with `message` until it is finished, on a terminal.
pub fn spinner(message: &'static str) -> Option<ProgressBar> {
    on_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    })
}

/// The bar of a catch-up: `received` of `needed` shares (a spinner while the total is not
/// known).
fn sync_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{spinner} share chain: {msg} [{bar:30}] {pos}/{len} shares ({per_sec})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Draws the share chain's sync state until it ends, if `draw` (on a terminal:
/// [`on_terminal`]): a bar while the node syncs, closed with a line when it is done.
pub async fn follow_sync(mut sync: watch::Receiver<SyncState>, draw: bool) {
    if !draw {
        return;
    }
    let mut bar: Option<ProgressBar> = None;
    loop {
        let state = sync.borrow_and_update().clone();
        match state {
            SyncState::Syncing {
                peer,
                received,
                needed,
            } => {
                let bar = bar.get_or_insert_with(sync_bar);
                bar.set_message(format!("syncing from {peer}"));
                let received = received as u64;
                bar.set_length(needed.map_or(received, |n| n as u64).max(received));
                bar.set_position(received);
            }
            SyncState::Synced | SyncState::Alone => {
                if let Some(bar) = bar.take() {
                    bar.finish_with_message(format!("{state}"));
                }
            }
        }
        if sync.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not drawing, the follower returns at once, though the sync state stays open.
    #[tokio::test]
    async fn nothing_is_drawn_unless_asked() {
        let (_tx, rx) = watch::channel(SyncState::Synced);
        tokio::time::timeout(Duration::from_secs(1), follow_sync(rx, false))
            .await
            .expect("returns at once");
    }

    /// Drawing follows a catch-up to its end (indicatif hides the bar itself where stderr is
    /// not a terminal) and stops with the sync state.
    #[tokio::test]
    async fn a_catch_up_is_followed_to_its_end() {
        let (tx, rx) = watch::channel(SyncState::Alone);
        let follower = tokio::spawn(follow_sync(rx, true));
        let peer = p2pool_network::PeerId::random();
        for (received, needed) in [(0, None), (500, Some(8_646)), (8_646, Some(8_646))] {
            tx.send_replace(SyncState::Syncing {
                peer,
                received,
                needed,
            });
            tokio::task::yield_now().await;
        }
        tx.send_replace(SyncState::Synced);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("ends with the sync state")
            .expect("no panic");
    }
}
