//! The `p2pool` command line: `run` a node, or start a local `devnet` (the default).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use p2pool::cli;
use p2pool::daemon::{Auth, RpcConfig};
use p2pool::devnet::{self, DevnetConfig, Dogecoind};
use p2pool::node::{DaemonP2p, Node, NodeConfig, NodeEvent, NodeOptions};
use p2pool_network::Multiaddr;
use share_chain::address::address_to_script;
use share_chain::{OperatorFee, Preset};
use tracing::info;

#[derive(Parser)]
#[command(
    name = "p2pool",
    version,
    about = "A decentralized P2Pool node for Litecoin"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node next to a litecoind.
    Run(Box<RunArgs>),
    /// A local devnet: regtest litecoind, a node and CPU miners (the default).
    Devnet(DevnetArgs),
    /// A running node at a glance.
    Status(ClientArgs),
    /// What a block found now would pay (everyone, or one address).
    Payouts {
        #[command(flatten)]
        client: ClientArgs,
        address: Option<String>,
    },
    /// This node's workers: hashrates, submissions, online or not.
    Miners(ClientArgs),
    /// The blocks the share chain found, with their status.
    Blocks {
        #[command(flatten)]
        client: ClientArgs,
        /// How many (newest first).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=500))]
        count: u64,
    },
}

/// Where a client command finds the node.
#[derive(Args)]
struct ClientArgs {
    /// The node's API address (default: 127.0.0.1 on the network's RPC port).
    #[arg(long)]
    rpc: Option<SocketAddr>,
    /// The network, for the default --rpc port.
    #[arg(long, default_value = "litecoin")]
    network: String,
}

impl ClientArgs {
    fn client(&self) -> Result<cli::ApiClient> {
        let addr = match self.rpc {
            Some(a) => a,
            None => {
                let preset = Preset::builtin(&self.network)?;
                SocketAddr::from(([127, 0, 0, 1], preset.ports.rpc))
            }
        };
        Ok(cli::ApiClient::new(addr))
    }
}

#[derive(Args)]
struct RunArgs {
    /// litecoin, litecoin-testnet or litecoin-regtest.
    #[arg(long, default_value = "litecoin")]
    network: String,
    /// A TOML file merged over the network's preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the share chain and peer data are kept.
    #[arg(long, default_value = "p2pool-data")]
    datadir: PathBuf,
    /// litecoind's JSON-RPC URL (default: 127.0.0.1 on the preset's port).
    #[arg(long)]
    daemon_rpc: Option<String>,
    #[arg(long, requires = "daemon_password")]
    daemon_user: Option<String>,
    #[arg(long, requires = "daemon_user")]
    daemon_password: Option<String>,
    /// litecoind's .cookie file (instead of a user and password).
    #[arg(long, conflicts_with_all = ["daemon_user", "daemon_password"])]
    daemon_cookie: Option<PathBuf>,
    /// litecoind's P2P address, used to learn of new blocks at once and to relay found
    /// blocks without an RPC thread (default: the RPC host on the chain's P2P port).
    #[arg(long)]
    daemon_p2p: Option<SocketAddr>,
    /// Do not connect to litecoind's P2P port (blocks go by submitblock only).
    #[arg(long, conflicts_with = "daemon_p2p")]
    no_daemon_p2p: bool,
    /// An aux chain daemon to merge-mine (dogecoind), whose blocks pay the share chain's
    /// window: `http://USER:PASSWORD@HOST:PORT`, or `http://HOST:PORT` with
    /// --aux-daemon-cookie. Repeatable, one per aux chain; the chain is learnt from it.
    #[arg(long)]
    aux_daemon_rpc: Vec<String>,
    /// The .cookie file of each --aux-daemon-rpc given without a user and password, in order.
    #[arg(long)]
    aux_daemon_cookie: Vec<PathBuf>,
    /// Stratum listen address (default: 0.0.0.0 on the preset's port).
    #[arg(long)]
    stratum: Option<SocketAddr>,
    /// Share-chain p2p listen multiaddr (repeatable; default: /ip4/0.0.0.0/tcp/<preset's
    /// p2p port>).
    #[arg(long)]
    p2p: Vec<Multiaddr>,
    /// Run without the share-chain network: this node mines its own chain.
    #[arg(long, conflicts_with_all = ["p2p", "peer"])]
    no_p2p: bool,
    /// JSON-RPC API, dashboard (GET /) and Prometheus metrics (GET /metrics) listen
    /// address (default: 127.0.0.1 on the preset's RPC port).
    #[arg(long)]
    rpc: Option<SocketAddr>,
    /// Discover share-chain peers on the local network with mDNS.
    #[arg(long, conflicts_with = "no_p2p")]
    mdns: bool,
    /// Share-chain peers to connect to (multiaddrs, e.g. /ip4/1.2.3.4/tcp/19338).
    #[arg(long)]
    peer: Vec<Multiaddr>,
    /// Seconds connected miners keep their last job once work pauses (litecoind gone,
    /// share chain syncing) before their connections are closed so they fail over.
    #[arg(long, default_value_t = 30)]
    stratum_pause_grace: u64,
    /// Miners' connections served at once; more are refused (a farm behind one address
    /// counts once per connection).
    #[arg(long, default_value_t = 10_000)]
    stratum_max_connections: usize,
    /// The least work of a share chain this node joins, in millionths of a block's work at
    /// litecoind's current target (0: any chain; see docs/PROTOCOL.md §11.1).
    #[arg(long, default_value_t = p2pool::node::DEFAULT_MIN_JOIN_WORK_PPM)]
    min_join_work_ppm: u32,
    /// Seconds without an accepted submission after which a worker shows as offline.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    offline_after: u64,
    /// POST each alert as JSON to this URL (with retries and a timeout).
    #[arg(long)]
    webhook: Option<String>,
    /// Operator fee in percent of the weight of shares mined through this node.
    #[arg(long, requires = "fee_address")]
    fee: Option<f64>,
    #[arg(long, requires = "fee")]
    fee_address: Option<String>,
}

#[derive(Args)]
struct DevnetArgs {
    /// CPU miners per node, each paying its own regtest address.
    #[arg(long, default_value_t = 3)]
    miners: usize,
    /// p2pool nodes, peered on loopback, each with its own miners.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=8))]
    nodes: u64,
    /// Stop after this many blocks.
    #[arg(long)]
    blocks: Option<u64>,
    /// The dogecoind to merge-mine Dogecoin with (a regtest pair is started). Default:
    /// $DOGECOIND, else dogecoind on PATH; without one the devnet runs without merged mining.
    #[arg(long, value_name = "PATH")]
    dogecoind: Option<PathBuf>,
    /// No merged mining, even if dogecoind is found.
    #[arg(long, conflicts_with = "dogecoind")]
    no_dogecoind: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The devnet prints its own story; the node's log is for `run` (RUST_LOG overrides).
    let default_filter = match cli.command {
        Some(Command::Run(_)) => "info",
        _ => "warn",
    };
    // Colour only on a terminal: not in a file or journald.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Some(Command::Run(args)) => run(*args).await,
            Some(Command::Devnet(args)) => devnet_command(args).await,
            Some(Command::Status(c)) => print(cli::status(&c.client()?).await),
            Some(Command::Payouts { client, address }) => {
                print(cli::payouts(&client.client()?, address).await)
            }
            Some(Command::Miners(c)) => print(cli::miners(&c.client()?).await),
            Some(Command::Blocks { client, count }) => {
                print(cli::blocks(&client.client()?, count).await)
            }
            None => {
                devnet_command(DevnetArgs {
                    miners: 3,
                    nodes: 1,
                    blocks: None,
                    dogecoind: None,
                    no_dogecoind: false,
                })
                .await
            }
        }
    })
}

fn print(table: Result<String, cli::CliError>) -> Result<()> {
    print!("{}", table?);
    Ok(())
}

/// litecoind's default cookie file for `chain` (`main`, `test`, `regtest`, `signet`):
/// `$HOME/.litecoin[/testnet4|/regtest|/signet]/.cookie` (`None` without a `$HOME`).
fn default_cookie(chain: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(cookie_in(std::path::Path::new(&home), chain))
}

/// litecoind's cookie file for `chain` under the home directory `home`: its default
/// datadir is `home/.litecoin`, with the chain's subdirectory for all but main.
fn cookie_in(home: &std::path::Path, chain: &str) -> PathBuf {
    let mut path = home.join(".litecoin");
    match chain {
        "test" => path.push("testnet4"),
        "regtest" => path.push("regtest"),
        "signet" => path.push("signet"),
        _ => {}
    }
    path.join(".cookie")
}

async fn devnet_command(args: DevnetArgs) -> Result<()> {
    let config = DevnetConfig {
        miners: args.miners,
        nodes: args.nodes as usize,
        blocks: args.blocks,
        dogecoind: match (args.no_dogecoind, args.dogecoind) {
            (true, _) => Dogecoind::Off,
            (false, Some(path)) => Dogecoind::At(path.display().to_string()),
            (false, None) => Dogecoind::find(),
        },
    };
    devnet::run(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
    let user_toml = match &args.config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let preset = Preset::load(&args.network, user_toml.as_deref())?;
    if let Some(webhook) = &args.webhook {
        let parsed = reqwest::Url::parse(webhook)
            .with_context(|| format!("--webhook {webhook:?} is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--webhook {webhook:?}: only http and https URLs are supported");
        }
    }
    let url = args
        .daemon_rpc
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", preset.ports.daemon_rpc));
    let auth = match (
        &args.daemon_user,
        &args.daemon_password,
        &args.daemon_cookie,
    ) {
        (Some(user), Some(password), None) => Auth::UserPass {
            user: user.clone(),
            password: password.clone(),
        },
        (None, None, Some(cookie)) => Auth::CookieFile(cookie.clone()),
        // Out of the box: a stock litecoind writes its cookie in its default datadir.
        (None, None, None) => {
            let chain = p2pool::daemon::watcher::daemon_chain_name(&preset.coin.chain);
            match default_cookie(chain) {
                Some(cookie) if cookie.is_file() => {
                    info!(cookie = %cookie.display(), %url, "using litecoind's default cookie");
                    Auth::CookieFile(cookie)
                }
                tried => bail!(
                    "no litecoind credentials given, and litecoind's default cookie file {} \
                     was not found (for litecoind at {url}); start litecoind with its default \
                     datadir, or give --daemon-cookie, or --daemon-user and --daemon-password",
                    tried.map_or("(no $HOME)".into(), |p| p.display().to_string())
                ),
            }
        }
        _ => bail!("give either --daemon-user/--daemon-password or --daemon-cookie"),
    };
    let fee = match (args.fee, &args.fee_address) {
        (Some(percent), Some(address)) => {
            if !(0.0..=100.0).contains(&percent) {
                bail!("--fee is a percentage between 0 and 100");
            }
            let basis_points = (percent * 100.0).round() as u16;
            if u32::from(basis_points) > preset.consensus.max_fee_basis_points {
                bail!(
                    "--fee {percent}% exceeds the network's limit of {}%",
                    f64::from(preset.consensus.max_fee_basis_points) / 100.0
                );
            }
            let script = address_to_script(address, &preset.coin)
                .with_context(|| format!("--fee-address {address}"))?;
            Some(OperatorFee {
                basis_points,
                script,
                aux_script: None,
            })
        }
        _ => None,
    };
    let p2p_listen = if args.no_p2p {
        Vec::new()
    } else if args.p2p.is_empty() {
        let default: Multiaddr = format!("/ip4/0.0.0.0/tcp/{}", preset.ports.p2p)
            .parse()
            .context("the preset's p2p port")?;
        vec![default]
    } else {
        args.p2p.clone()
    };
    let api = args
        .rpc
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], preset.ports.rpc)));
    // The preset's bootstrap peers, then the operator's.
    let mut peers = Vec::new();
    for peer in &preset.bootstrap_peers {
        peers.push(
            peer.parse::<Multiaddr>()
                .with_context(|| format!("the preset's bootstrap peer {peer:?}"))?,
        );
    }
    peers.extend(args.peer.iter().cloned());
    let stratum = args
        .stratum
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], preset.ports.stratum)));
    std::fs::create_dir_all(&args.datadir)
        .with_context(|| format!("cannot create {}", args.datadir.display()))?;
    // Loading the share chain from the store and reaching the daemons can take a while.
    let starting =
        p2pool::progress::spinner("starting: loading the share chain, reaching the daemons");
    let node = Node::start_with(
        NodeConfig {
            preset,
            datadir: args.datadir.clone(),
            daemon: RpcConfig::new(url, auth),
            stratum,
            fee,
            p2p_listen,
            peers,
        },
        NodeOptions {
            stratum_pause_grace: Duration::from_secs(args.stratum_pause_grace),
            stratum_max_connections: args.stratum_max_connections,
            api: Some(api),
            mdns: args.mdns,
            min_join_work_ppm: args.min_join_work_ppm,
            daemon_p2p: match (args.no_daemon_p2p, args.daemon_p2p) {
                (true, _) => DaemonP2p::Off,
                (false, Some(addr)) => DaemonP2p::At(addr),
                (false, None) => DaemonP2p::Default,
            },
            offline_after: Duration::from_secs(args.offline_after),
            webhook: args.webhook.clone(),
            aux_daemons: aux_daemons(&args.aux_daemon_rpc, &args.aux_daemon_cookie)?,
        },
    )
    .await;
    if let Some(spinner) = starting {
        spinner.finish_and_clear();
    }
    let node = node?;
    info!(stratum = %node.stratum_addr(), api = ?node.api_addr(), "p2pool node running; Ctrl-C stops it");
    if let Some(p2p) = &node.p2p {
        let draw = p2pool::progress::on_terminal();
        tokio::spawn(p2pool::progress::follow_sync(p2p.sync_state(), draw));
        info!(peer_id = %p2p.local_peer_id(), listen = ?p2p.listen_addrs(), "share-chain network");
    }
    let mut events = node.subscribe();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.recv() => {
                if let Ok(NodeEvent::BlockSubmitted { hash, accepted, .. }) = event {
                    info!(%hash, accepted, "block submitted");
                }
            }
        }
    }
    info!("stopping");
    Ok(())
}

/// The aux daemons of `--aux-daemon-rpc`: credentials from the URL, else the next
/// `--aux-daemon-cookie`.
fn aux_daemons(urls: &[String], cookies: &[PathBuf]) -> anyhow::Result<Vec<RpcConfig>> {
    let mut cookies = cookies.iter();
    let mut out = Vec::with_capacity(urls.len());
    for given in urls {
        let mut url = reqwest::Url::parse(given)
            .with_context(|| format!("--aux-daemon-rpc {given:?} is not a URL"))?;
        let auth = if url.username().is_empty() {
            let cookie = cookies.next().with_context(|| {
                format!("--aux-daemon-rpc {given:?} has no USER:PASSWORD; give --aux-daemon-cookie")
            })?;
            Auth::CookieFile(cookie.clone())
        } else {
            let auth = Auth::UserPass {
                user: url.username().to_string(),
                password: url.password().unwrap_or_default().to_string(),
            };
            let _ = url.set_username("");
            let _ = url.set_password(None);
            auth
        };
        out.push(RpcConfig::new(url.as_str().trim_end_matches('/'), auth));
    }
    if cookies.next().is_some() {
        bail!("more --aux-daemon-cookie files than --aux-daemon-rpc URLs without credentials");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pool::daemon::watcher::daemon_chain_name;
    use std::path::Path;

    #[test]
    fn the_default_cookie_is_in_litecoinds_default_datadir_for_each_network() {
        let home = Path::new("/home/op");
        for (network, expected) in [
            ("litecoin", "/home/op/.litecoin/.cookie"),
            ("litecoin-testnet", "/home/op/.litecoin/testnet4/.cookie"),
            ("litecoin-regtest", "/home/op/.litecoin/regtest/.cookie"),
        ] {
            // The same chain name `run` derives from the preset.
            let preset = Preset::builtin(network).unwrap();
            let chain = daemon_chain_name(&preset.coin.chain);
            assert_eq!(
                cookie_in(home, chain),
                Path::new(expected),
                "{network} ({chain})"
            );
        }
        assert_eq!(
            cookie_in(home, "signet"),
            Path::new("/home/op/.litecoin/signet/.cookie")
        );
    }
}
