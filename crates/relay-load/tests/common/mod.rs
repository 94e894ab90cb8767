//! What the tests that drive the real `e2ee-relay` share.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The relay binary `cargo build --bins` (or `cargo test --workspace`) puts next to the
/// load generator's.
fn relay_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_e2ee-relay-load")).with_file_name("e2ee-relay");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first",
        path.display()
    );
    path
}

/// `e2ee-relay serve` on `listen` with its data in `dir`, on SQLite unless the caller
/// adds a Redis URL (the environment's store settings are cleared).
pub fn relay_command(dir: &Path, listen: &str) -> Command {
    let mut cmd = Command::new(relay_binary());
    cmd.args(["serve", "--listen", listen, "--data-dir"])
        .arg(dir)
        .env_remove("E2EE_REDIS_URL")
        .env_remove("E2EE_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    cmd
}
