//! `e2ee irc`: a local IRC server that speaks for one e2ee profile, so that any IRC
//! client (irssi, WeeChat, HexChat) becomes an end-to-end encrypted client. Nicks are
//! contacts, the control channel `&e2ee` takes what IRC has no command for, and
//! nothing leaves the machine unencrypted: the gateway is a front end on the client
//! library's event stream, like the CLI and the chat. docs/IRC.md describes it.
//!
//! The line codec ([`Message`], [`LineReader`]) is sans-IO and fuzzed
//! (fuzz/fuzz_targets/irc_line.rs); [`serve`] runs the server.

mod channel;
mod control;
mod line;
mod nick;
mod reply;
mod server;
mod session;
mod text;

pub use control::{CONTROL_CHANNEL, Control, SERVICE_NICK, parse as parse_control};
pub use line::{LineError, LineReader, MAX_LINE_BYTES, MAX_PARAMS, MAX_TAGS_BYTES, Message};
pub use nick::{NICKLEN, NICKS_FILE, NickBook, is_valid as is_valid_nick};
pub use server::{CONSUMER, IrcError, SERVER_NAME, SYNC_WAIT, serve};
pub use session::{PING_INTERVAL, PING_TIMEOUT};
pub use text::{clean as clean_text, server_time};
