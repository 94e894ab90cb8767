//! Crash points for the crash-safety tests: the process aborts where a test asks.

/// Environment variable naming a point where the process aborts: a test hook for
/// crash-safety tests. Values: [`CRASH_AFTER_COMMIT_BEFORE_ACK`],
/// [`CRASH_AFTER_ENCRYPT_BEFORE_POST`]. Never set it in normal use.
pub const CRASH_ENV: &str = "E2EE_TEST_CRASH_AT";
/// [`CRASH_ENV`] value: abort after a received message is committed, before the ack.
pub const CRASH_AFTER_COMMIT_BEFORE_ACK: &str = "after-commit-before-ack";
/// [`CRASH_ENV`] value: abort after a sent message is encrypted and committed to the
/// outbox, before it is posted.
pub const CRASH_AFTER_ENCRYPT_BEFORE_POST: &str = "after-encrypt-before-post";

pub(crate) fn crash_point(name: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|value| value == name) {
        std::process::abort();
    }
}
