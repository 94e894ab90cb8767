//! Crash points for the crash-safety tests (tests/crash.rs).
//!
//! With the `test-hooks` feature the process aborts at the point that
//! [`CRASH_ENV`] names. Without it, which is every build of `e2ee` except the one
//! `cargo test --workspace` makes for the end-to-end tests (the root test package
//! enables the feature on its dev-dependency), [`crash_point`] compiles to nothing:
//! the variable is never read, and no environment can abort a user's client.

/// Where a crash-safety test may abort the process.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CrashPoint {
    /// After a received message is committed, before the ack.
    AfterCommitBeforeAck,
    /// After a sent message is encrypted and committed to the outbox, before the post.
    AfterEncryptBeforePost,
}

/// Environment variable naming a point where the process aborts: a test hook for
/// crash-safety tests. Values: [`CRASH_AFTER_COMMIT_BEFORE_ACK`],
/// [`CRASH_AFTER_ENCRYPT_BEFORE_POST`]. Never set it in normal use.
#[cfg(feature = "test-hooks")]
pub const CRASH_ENV: &str = "E2EE_TEST_CRASH_AT";
/// [`CRASH_ENV`] value: abort after a received message is committed, before the ack.
#[cfg(feature = "test-hooks")]
pub const CRASH_AFTER_COMMIT_BEFORE_ACK: &str = "after-commit-before-ack";
/// [`CRASH_ENV`] value: abort after a sent message is encrypted and committed to the
/// outbox, before it is posted.
#[cfg(feature = "test-hooks")]
pub const CRASH_AFTER_ENCRYPT_BEFORE_POST: &str = "after-encrypt-before-post";

/// Aborts the process if [`CRASH_ENV`] names `point` (with `test-hooks` only).
#[cfg(feature = "test-hooks")]
pub(crate) fn crash_point(point: CrashPoint) {
    let name = match point {
        CrashPoint::AfterCommitBeforeAck => CRASH_AFTER_COMMIT_BEFORE_ACK,
        CrashPoint::AfterEncryptBeforePost => CRASH_AFTER_ENCRYPT_BEFORE_POST,
    };
    if std::env::var(CRASH_ENV).is_ok_and(|value| value == name) {
        std::process::abort();
    }
}

/// Without `test-hooks`: nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub(crate) fn crash_point(_point: CrashPoint) {}

/// Test hooks of the groups tests (crates/client-core/tests/groups.rs): only with the
/// `test-hooks` feature.
#[cfg(feature = "test-hooks")]
impl super::Client {
    /// Starts keeping a copy of every envelope the sync fetches, and hands out (and
    /// forgets) those kept so far.
    pub fn tap_envelopes(&self) -> Vec<e2ee_proto::Envelope> {
        let mut tap = super::lock(&self.tap);
        tap.replace(Vec::new()).unwrap_or_default()
    }

    /// Receives `envelope` as if the relay had delivered it to this client.
    pub async fn receive_envelope(
        &self,
        envelope: &e2ee_proto::Envelope,
    ) -> Result<(), crate::ClientError> {
        let me = self.me().await?;
        self.receive(&me, envelope, &mut super::GroupBatch::default())
            .await?;
        self.hub().wake();
        Ok(())
    }

    /// Fetches what the relay holds for us, without taking any of it in or acking it
    /// (the next sync gets it again).
    pub async fn peek_envelopes(&self) -> Result<Vec<e2ee_proto::Envelope>, crate::ClientError> {
        let me = self.me().await?;
        let polled = me
            .relay
            .poll(&me.signer(), std::time::Duration::ZERO, super::BATCH)
            .await?;
        Ok(polled.envelopes)
    }

    /// Acks `ids` at the relay without taking them in: envelopes lost to this client.
    pub async fn ack_envelopes(&self, ids: &[u64]) -> Result<(), crate::ClientError> {
        let me = self.me().await?;
        me.relay.ack(&me.signer(), ids).await?;
        Ok(())
    }

    /// Takes in `envelopes` as the sync takes in one poll's (group envelopes verified
    /// together), without acking them.
    pub async fn receive_poll(
        &self,
        envelopes: &[e2ee_proto::Envelope],
    ) -> Result<(), crate::ClientError> {
        let me = self.me().await?;
        let mut batch = super::GroupBatch::default();
        for i in 0..envelopes.len() {
            self.receive_polled(&me, envelopes, i, &mut batch).await?;
        }
        self.hub().wake();
        Ok(())
    }

    /// Forgets every sender key received for `group`: a broken or lost sender-key
    /// state, which the resend path must rebuild.
    pub async fn forget_sender_keys(&self, group: &str) -> Result<(), crate::ClientError> {
        let mut tx = self.store.write().await?;
        let row = Self::group_row(&mut tx, group).await?;
        tx.forget_sender_keys(row.local_id).await?;
        tx.commit().await?;
        Ok(())
    }
}
