//! Prekey upkeep: what to generate, rotate and delete, from counts, ages and the clock
//! the shell passes in.

use std::time::Duration;

/// One-time prekeys uploaded at registration and topped up to.
pub const ONE_TIME_PREKEY_TARGET: u32 = 100;
/// Refill one-time prekeys when the relay holds fewer than this.
pub const ONE_TIME_PREKEY_LOW_WATER: u64 = 25;
/// Most one-time prekey private parts kept locally: the up to
/// [`ONE_TIME_PREKEY_TARGET`] the relay still holds, plus as many handed out whose
/// prekey message has not arrived yet. Over it the oldest are deleted, so an attacker
/// draining the relay's prekeys cannot make the store grow without bound; a prekey
/// message on a deleted key then fails like one on an unknown key.
pub const MAX_LOCAL_ONE_TIME_PREKEYS: usize = 2 * ONE_TIME_PREKEY_TARGET as usize;
/// Age at which the signed prekey is replaced.
pub const SIGNED_PREKEY_ROTATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a replaced signed prekey's private part is kept for late prekey messages.
pub const SIGNED_PREKEY_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Seen envelope ids are kept a little longer than the relay's 30-day envelope TTL.
pub(crate) const SEEN_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

/// What upkeep starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UpkeepInput {
    /// One-time prekeys the relay still holds.
    pub(crate) relay_one_time_prekeys: u64,
    /// The id the next one-time prekey gets.
    pub(crate) next_one_time_prekey_id: u32,
    /// The id the next signed prekey gets.
    pub(crate) next_signed_prekey_id: u32,
    /// The current signed prekey's id and creation time (unix ms), if any.
    pub(crate) current_signed_prekey: Option<(u32, u64)>,
    /// Unix ms.
    pub(crate) now: u64,
}

/// What upkeep does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UpkeepPlan {
    /// One-time prekeys to generate and upload: `(first id, count)`.
    pub(crate) one_time_prekeys: Option<(u32, u32)>,
    /// A signed prekey to generate, upload and make current, with its id.
    pub(crate) signed_prekey: Option<u32>,
    /// The id counters once the keys above exist.
    pub(crate) next_one_time_prekey_id: u32,
    /// See `next_one_time_prekey_id`.
    pub(crate) next_signed_prekey_id: u32,
    /// Signed prekeys retired before this (unix ms) are deleted.
    pub(crate) delete_signed_retired_before: u64,
    /// Seen envelope ids older than this (unix ms) are forgotten.
    pub(crate) forget_seen_before: u64,
}

/// Plans upkeep: refill one-time prekeys up to [`ONE_TIME_PREKEY_TARGET`] when the
/// relay holds fewer than [`ONE_TIME_PREKEY_LOW_WATER`], rotate a signed prekey older
/// than [`SIGNED_PREKEY_ROTATION`] (or make one if there is none). Ids count up and
/// wrap, skipping 0.
pub(crate) fn plan(input: UpkeepInput) -> UpkeepPlan {
    let mut next_otk = input.next_one_time_prekey_id;
    let mut next_spk = input.next_signed_prekey_id;
    let mut one_time_prekeys = None;
    if input.relay_one_time_prekeys < ONE_TIME_PREKEY_LOW_WATER {
        let missing = ONE_TIME_PREKEY_TARGET
            .saturating_sub(u32::try_from(input.relay_one_time_prekeys).unwrap_or(0));
        one_time_prekeys = Some((next_otk, missing));
        next_otk = next_otk.wrapping_add(missing).max(1);
    }
    let mut signed_prekey = None;
    if input
        .current_signed_prekey
        .is_none_or(|(_, created)| input.now.saturating_sub(created) >= ms(SIGNED_PREKEY_ROTATION))
    {
        signed_prekey = Some(next_spk);
        next_spk = next_spk.wrapping_add(1).max(1);
    }
    UpkeepPlan {
        one_time_prekeys,
        signed_prekey,
        next_one_time_prekey_id: next_otk,
        next_signed_prekey_id: next_spk,
        delete_signed_retired_before: input.now.saturating_sub(ms(SIGNED_PREKEY_GRACE)),
        forget_seen_before: input.now.saturating_sub(ms(SEEN_RETENTION)),
    }
}

/// The one-time prekeys to delete from `kept` (ids stored locally) so that at most
/// [`MAX_LOCAL_ONE_TIME_PREKEYS`] remain: the oldest. Ids count up (wrapping) to
/// `next_id` and the relay hands out its lowest id first, so the newest ones are those
/// it still holds and only keys already handed out are deleted.
pub(crate) fn excess_one_time_prekeys(mut kept: Vec<u32>, next_id: u32) -> Vec<u32> {
    if kept.len() <= MAX_LOCAL_ONE_TIME_PREKEYS {
        return Vec::new();
    }
    kept.sort_by_key(|id| next_id.wrapping_sub(*id));
    kept.split_off(MAX_LOCAL_ONE_TIME_PREKEYS)
}

/// `duration` in whole milliseconds, saturating.
pub(crate) fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const NOW: u64 = 1_700_000_000_000;
    const DAY: u64 = 24 * 3600 * 1000;

    fn input(relay: u64, signed: Option<(u32, u64)>) -> UpkeepInput {
        UpkeepInput {
            relay_one_time_prekeys: relay,
            next_one_time_prekey_id: 101,
            next_signed_prekey_id: 2,
            current_signed_prekey: signed,
            now: NOW,
        }
    }

    #[test]
    fn plan_table() {
        let fresh = Some((1, NOW - DAY));
        let old = Some((1, NOW - 7 * DAY));
        // (relay count, current signed prekey, one-time prekeys to make, signed id)
        let cases = [
            (100, fresh, None, None),
            (ONE_TIME_PREKEY_LOW_WATER, fresh, None, None),
            (ONE_TIME_PREKEY_LOW_WATER - 1, fresh, Some((101, 76)), None),
            (0, fresh, Some((101, 100)), None),
            (100, old, None, Some(2)),
            (100, None, None, Some(2)),
            (0, None, Some((101, 100)), Some(2)),
        ];
        for (relay, signed, one_time, rotate) in cases {
            let plan = plan(input(relay, signed));
            assert_eq!(plan.one_time_prekeys, one_time, "{relay} {signed:?}");
            assert_eq!(plan.signed_prekey, rotate, "{relay} {signed:?}");
            let made = one_time.map_or(0, |(_, n)| n);
            assert_eq!(plan.next_one_time_prekey_id, 101 + made);
            assert_eq!(plan.next_signed_prekey_id, 2 + u32::from(rotate.is_some()));
            assert_eq!(plan.delete_signed_retired_before, NOW - 30 * DAY);
            assert_eq!(plan.forget_seen_before, NOW - 31 * DAY);
        }
    }

    #[test]
    fn ids_wrap_and_skip_zero() {
        let plan = plan(UpkeepInput {
            relay_one_time_prekeys: 0,
            next_one_time_prekey_id: u32::MAX - 99,
            next_signed_prekey_id: u32::MAX,
            current_signed_prekey: None,
            now: NOW,
        });
        assert_eq!(plan.one_time_prekeys, Some((u32::MAX - 99, 100)));
        assert_eq!(plan.next_one_time_prekey_id, 1);
        assert_eq!(plan.signed_prekey, Some(u32::MAX));
        assert_eq!(plan.next_signed_prekey_id, 1);
    }

    #[test]
    fn excess_one_time_prekeys_are_the_oldest_counting_from_the_next_id() {
        let max = u32::try_from(MAX_LOCAL_ONE_TIME_PREKEYS).unwrap();
        assert!(excess_one_time_prekeys((1..=max).collect(), max + 1).is_empty());
        let mut excess = excess_one_time_prekeys((1..=max + 50).rev().collect(), max + 51);
        excess.sort_unstable();
        assert_eq!(excess, (1..=50).collect::<Vec<_>>());
        // Across the wrap, the ids just below it are older than those just above 0.
        let kept: Vec<u32> = (u32::MAX - 9..=u32::MAX).chain(1..=max).collect();
        let mut excess = excess_one_time_prekeys(kept, max + 1);
        excess.sort_unstable();
        assert_eq!(excess, (u32::MAX - 9..=u32::MAX).collect::<Vec<_>>());
    }
}
