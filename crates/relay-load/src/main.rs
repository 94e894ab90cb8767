//! `e2ee-relay-load`: a load generator for a running relay.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use e2ee_relay_load::{Auth, LoadConfig};

/// Same allocator as the relay (see crates/relay-server/src/main.rs): the generator
/// signs and parses as many requests as the relay serves, on the same cores.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The e2ee relay load generator: registers users with real Ed25519 keys, then drives
/// signed sends and long polls against a running relay and prints throughput,
/// send-to-delivery latency and the CPU time each delivered message cost.
///
/// By default it sends one message per request and its receivers poll as the
/// messenger client does (one connection each, minute-long polls).
///
/// The accounts it registers (`load-*@bench.invalid`) stay in the relay's directory:
/// run it against a relay whose data can be wiped. See docs/DEPLOY.md, "Load-testing
/// a relay".
// The doc comment is the help text; a bare `about` would show the crate's description,
// which is the relay's.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Relay base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Users to register; each runs one long-polling receiver and is sent to.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Further accounts that only hold long polls (nobody sends to them), as most of
    /// a relay's users do at any moment.
    #[arg(long, default_value_t = 0)]
    idle_waiters: usize,
    /// Sending accounts, each sending one request at a time on its own keep-alive
    /// connection, as the messenger client does (in the closed loop one task each).
    #[arg(long, default_value_t = 32)]
    senders: usize,
    /// Envelopes per send request (1..=100). People send one message at a time;
    /// reports of larger batches say "batched".
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Target envelopes per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds the senders run after the warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds the senders run first, at the same rate, before latency is recorded
    /// (the start-up burst of connections and first polls is not steady state).
    #[arg(long, default_value_t = 1.0)]
    warmup_seconds: f64,
    /// Envelope body size in bytes.
    #[arg(long, default_value_t = 256)]
    body_size: usize,
    /// Issue one request every batch/rate seconds whether or not earlier ones were
    /// answered, and measure latency from each request's scheduled time (needs
    /// --rate); a request due while its account's previous one is unanswered waits
    /// for it, and the wait counts.
    #[arg(long, requires = "rate")]
    open_loop: bool,
    /// Receive with GET /v1/messages plus a separate POST /v1/messages/ack per batch
    /// (two signed requests per delivery) instead of POST /v1/messages/poll, which
    /// acknowledges the previous batch in the request that waits for the next.
    #[arg(long)]
    separate_acks: bool,
    /// The relay's process id, when it runs on this machine: its CPU time per delivered
    /// message and its memory per waiting poll are then reported.
    #[arg(long)]
    relay_pid: Option<u32>,
    /// The Redis the relay uses, whose CPU time per delivered message is then
    /// reported (`INFO cpu`).
    #[arg(long)]
    redis_url: Option<String>,
    /// How requests are authenticated: `session` (one signed `POST /v1/sessions` per
    /// account, then an HMAC on every request, as the messenger client does) or
    /// `signature` (an Ed25519 signature on every request, as older clients do), to
    /// measure the two side by side against one relay.
    #[arg(long, value_enum, default_value_t = AuthArg::Session)]
    auth: AuthArg,
    /// Print the report as one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Group sends instead: every request is one `POST /v1/messages/multi` to the
    /// same N recipients (1..=1000), who do not poll; --senders accounts send, --rate
    /// is then sends (not envelopes) per second. Reports the accept latency of a send
    /// and the envelopes queued per second through fan-out.
    #[arg(long, value_name = "N")]
    fanout: Option<usize>,
}

/// `--auth`: the command line's names for [`Auth`].
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AuthArg {
    Session,
    Signature,
}

impl From<AuthArg> for Auth {
    fn from(arg: AuthArg) -> Self {
        match arg {
            AuthArg::Session => Auth::Session,
            AuthArg::Signature => Auth::Signature,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(recipients) = args.fanout {
        return fanout(&args, recipients).await;
    }
    let config = LoadConfig {
        url: args.url.clone(),
        users: args.users,
        idle_waiters: args.idle_waiters,
        senders: args.senders,
        batch: args.batch,
        rate: args.rate,
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::try_from_secs_f64(args.warmup_seconds)
            .context("--warmup-seconds must be a non-negative number of seconds")?,
        body_size: args.body_size,
        open_loop: args.open_loop,
        separate_acks: args.separate_acks,
        relay_pid: args.relay_pid,
        redis_url: args.redis_url.clone(),
        auth: args.auth.into(),
    };
    if config.open_loop && config.rate == 0 {
        anyhow::bail!("--open-loop needs a --rate above 0");
    }
    if !args.json {
        print_setup(&args, &config);
    }
    let report = e2ee_relay_load::run(&config)
        .await
        .context("running the load")?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

async fn fanout(args: &Args, recipients: usize) -> anyhow::Result<()> {
    if !(1..=e2ee_proto::MAX_FANOUT_RECIPIENTS).contains(&recipients) {
        anyhow::bail!(
            "--fanout takes 1 to {} recipients",
            e2ee_proto::MAX_FANOUT_RECIPIENTS
        );
    }
    let config = e2ee_relay_load::FanoutConfig {
        url: args.url.clone(),
        recipients,
        senders: args.senders,
        rate: args.rate as f64,
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::try_from_secs_f64(args.warmup_seconds)
            .context("--warmup-seconds must be a non-negative number of seconds")?,
        body_size: args.body_size,
        relay_pid: args.relay_pid,
        redis_url: args.redis_url.clone(),
        auth: args.auth.into(),
    };
    if !args.json {
        println!(
            "load: fan-out to {recipients} recipients, {} senders, {} sends/s{}, {} s after a {} s \
             warm-up, body {} B",
            config.senders,
            if args.rate == 0 {
                "max".to_owned()
            } else {
                args.rate.to_string()
            },
            if args.rate == 0 {
                " (closed loop)"
            } else {
                " (paced; latency from the schedule)"
            },
            args.seconds,
            args.warmup_seconds,
            config.body_size
        );
    }
    let report = e2ee_relay_load::run_fanout(&config)
        .await
        .context("running the fan-out load")?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

fn print_setup(args: &Args, config: &LoadConfig) {
    println!(
        "load: {} users (+{} only waiting), {} senders, batch {}{}, rate {}{}, {} s after a {} s \
         warm-up, body {} B, {}, auth {:?}",
        config.users,
        config.idle_waiters,
        config.senders,
        config.batch,
        if config.batch > 1 { " (batched)" } else { "" },
        if config.rate == 0 {
            "max".to_owned()
        } else {
            config.rate.to_string()
        },
        if config.open_loop {
            " (open loop)"
        } else {
            " (closed loop)"
        },
        args.seconds,
        args.warmup_seconds,
        config.body_size,
        if config.separate_acks {
            "separate acks"
        } else {
            "acks in the next poll"
        },
        config.auth
    );
}
