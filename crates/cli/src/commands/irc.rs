//! `e2ee irc [--listen ADDR]`: a local IRC server speaking for this profile
//! (crates/irc, docs/IRC.md).

use std::net::SocketAddr;

use e2ee_client_core::ClientOptions;
use serde_json::json;

use crate::UserError;
use crate::output::Output;

/// Where the gateway listens when `--listen` is not given: loopback only.
const DEFAULT_LISTEN: &str = "127.0.0.1:6667";

/// Arguments of `irc`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on (port 0: any free port, printed at start). Anything but a
    /// loopback address lets other machines reach your messages in clear IRC.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
}

pub(crate) async fn run(options: ClientOptions, args: &Args, out: &Output) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| UserError(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        out.warn(
            "irc_not_loopback",
            &format!(
                "listening on {addr}, which is not a loopback address: IRC is not encrypted, \
                 so what you read and write crosses the network in clear"
            ),
            &serde_json::Map::new(),
        );
    }
    out.result(
        &format!(
            "e2ee irc listening on {addr}; connect an IRC client, e.g. irssi -c {} -p {}",
            addr.ip(),
            addr.port()
        ),
        &json!({"listening": addr.to_string()}),
    )?;
    match e2ee_irc::serve(listener, options).await {
        Ok(()) => Ok(()),
        Err(e2ee_irc::IrcError::Client(error)) => Err(error.into()),
        Err(other) => Err(UserError(other.to_string()).into()),
    }
}
