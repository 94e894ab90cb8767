//! `e2ee chat`: a full-screen terminal chat on the e2ee client library's event stream.
//!
//! The [`App`] is the chat's state machine (keys and library events in, [`Action`]s
//! out, no I/O); [`ui::draw`] paints it; [`run`] is the terminal loop that owns the
//! terminal, runs the profile's sync in the background and carries out the actions.
//! The terminal is restored on exit, on Ctrl-C, on a panic (a hook) and on SIGTERM,
//! SIGHUP, SIGINT and SIGQUIT (the loops stop and leave).

mod app;
mod command;
mod input;
mod login;
mod model;
mod register;
mod run;
mod settings;
mod terminal;
pub mod text;
pub mod ui;

pub use app::{
    Action, App, Connection, HISTORY_PAGE, MAX_ENTRIES, Overlay, SendOutcome, TYPING_IDLE_MS,
    TYPING_REFRESH_MS, TYPING_SHOWN_MS, group_title, system_line,
};
pub use command::{Command, CommandError, GroupCommand, parse as parse_command};
pub use input::Input;
pub use login::{
    LoginAction, LoginForm, LoginOutcome, MAX_PASSPHRASE_BYTES, Profile, Unlock, list_profiles,
};
pub use model::{Conversation, Entry, GroupPanel, Line, Mark, Member, Presence};
pub use register::{Field, FormAction, RegisterForm, RegisterOutcome, Submit};
pub use run::{CONSUMER, ChatError, SYNC_WAIT, load_keymap, load_settings, run, run_profile};
pub use settings::{
    DEFAULT_AWAY_AFTER_MINUTES, KEYS_FILE, KeyAction, Keymap, KeymapError, SETTINGS_FILE, Settings,
};
pub use terminal::SIGNAL_GRACE;
