//! The directory suite, on SQLite and on PostgreSQL (E2EE_TEST_DATABASE_URL, a fresh
//! schema per test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::HashSet;

use e2ee_relay_load::Identity;
use e2ee_relay_server::directory::{
    Directory, DirectoryError, NewAccount, NewListing, PendingRegistration,
};

struct Fixture {
    directory: Directory,
    _dir: tempfile::TempDir,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let directory = Directory::open(None, dir.path()).await.unwrap();
    Fixture {
        directory,
        _dir: dir,
    }
}

async fn postgres() -> Fixture {
    let schema = common::fresh_pg_schema().await;
    let directory = Directory::connect_postgres(&common::postgres_url(), Some(&schema))
        .await
        .unwrap();
    Fixture {
        directory,
        _dir: tempfile::tempdir().unwrap(),
    }
}

async fn register(d: &Directory, email: &str, opks: u32) -> Identity {
    let who = Identity::generate(email);
    let reg = who.registration(opks);
    d.register(NewAccount {
        email,
        identity_key: &reg.identity_key.0,
        signed_prekey: &reg.signed_prekey,
        one_time_prekeys: &reg.one_time_prekeys,
        now_ms: 1234,
    })
    .await
    .unwrap();
    who
}

async fn accounts_and_duplicates(f: Fixture) {
    let d = &f.directory;
    let alice = register(d, "alice@x.org", 3).await;
    let account = d.account("alice@x.org").await.unwrap().unwrap();
    assert_eq!(account.identity_key, alice.key.verifying_key().to_bytes());
    assert_eq!(account.created_at, 1234);
    assert!(!account.banned);
    assert!(d.account("bob@x.org").await.unwrap().is_none());
    let other = Identity::generate("alice@x.org").registration(0);
    let dup = d
        .register(NewAccount {
            email: "alice@x.org",
            identity_key: &other.identity_key.0,
            signed_prekey: &other.signed_prekey,
            one_time_prekeys: &[],
            now_ms: 1,
        })
        .await;
    assert!(matches!(dup, Err(DirectoryError::EmailTaken)), "{dup:?}");
    // The failed registration left the original untouched.
    assert_eq!(d.prekey_count("alice@x.org").await.unwrap(), 3);
    assert_eq!(
        d.account("alice@x.org")
            .await
            .unwrap()
            .unwrap()
            .identity_key,
        alice.key.verifying_key().to_bytes()
    );
}

async fn bundles_and_prekeys(f: Fixture) {
    let d = &f.directory;
    let alice = register(d, "alice@x.org", 2).await;
    let b1 = d.bundle("alice@x.org").await.unwrap().unwrap();
    assert_eq!(b1.one_time_prekey.as_ref().unwrap().id, 1);
    assert!(
        b1.signed_prekey
            .verify(&alice.key.verifying_key().to_bytes())
    );
    let b2 = d.bundle("alice@x.org").await.unwrap().unwrap();
    assert_eq!(b2.one_time_prekey.unwrap().id, 2);
    assert!(
        d.bundle("alice@x.org")
            .await
            .unwrap()
            .unwrap()
            .one_time_prekey
            .is_none()
    );
    assert!(d.bundle("nobody@x.org").await.unwrap().is_none());
    let spk = alice.signed_prekey(9);
    let count = d
        .upload_prekeys(
            "alice@x.org",
            Some(&spk),
            &Identity::one_time_prekeys(5, 3),
            99,
        )
        .await
        .unwrap();
    assert_eq!(count, 3);
    // Re-uploading known ids changes nothing.
    let count = d
        .upload_prekeys("alice@x.org", None, &Identity::one_time_prekeys(5, 4), 99)
        .await
        .unwrap();
    assert_eq!(count, 4);
    let b = d.bundle("alice@x.org").await.unwrap().unwrap();
    assert_eq!(b.signed_prekey, spk);
    assert_eq!(b.one_time_prekey.unwrap().id, 5);
    let too_many = Identity::one_time_prekeys(100, 200);
    for chunk in 0..5 {
        let keys: Vec<_> = Identity::one_time_prekeys(1000 + chunk * 200, 200);
        let _ = d.upload_prekeys("alice@x.org", None, &keys, 1).await;
    }
    let r = d.upload_prekeys("alice@x.org", None, &too_many, 1).await;
    assert!(matches!(r, Err(DirectoryError::TooManyPreKeys)), "{r:?}");
    assert!(d.prekey_count("alice@x.org").await.unwrap() <= 1000);
}

async fn concurrent_fetches_never_share_a_prekey(f: Fixture) {
    let d = &f.directory;
    register(d, "alice@x.org", 60).await;
    let mut tasks = Vec::new();
    for _ in 0..80 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            d.bundle("alice@x.org")
                .await
                .unwrap()
                .unwrap()
                .one_time_prekey
                .map(|k| k.id)
        }));
    }
    let mut got = Vec::new();
    for task in tasks {
        if let Some(id) = task.await.unwrap() {
            got.push(id);
        }
    }
    let unique: HashSet<_> = got.iter().copied().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "a one-time prekey was handed out twice: {got:?}"
    );
    assert!(
        got.len() >= 50,
        "only {} of 60 prekeys handed out to 80 fetches",
        got.len()
    );
    // Whatever was not handed out is still there.
    assert_eq!(
        d.prekey_count("alice@x.org").await.unwrap() as usize,
        60 - got.len()
    );
}

async fn bans_and_listing(f: Fixture) {
    let d = &f.directory;
    register(d, "bob@x.org", 1).await;
    register(d, "alice@x.org", 2).await;
    d.set_banned("bob@x.org", true).await.unwrap();
    assert!(d.account("bob@x.org").await.unwrap().unwrap().banned);
    // A banned account's bundle does not consume its prekeys.
    let b = d.bundle("bob@x.org").await.unwrap().unwrap();
    assert!(b.account.banned && b.one_time_prekey.is_none());
    assert_eq!(d.prekey_count("bob@x.org").await.unwrap(), 1);
    assert!(matches!(
        d.set_banned("nobody@x.org", true).await,
        Err(DirectoryError::UnknownAccount)
    ));
    let list = d.list().await.unwrap();
    let summary: Vec<_> = list
        .iter()
        .map(|s| {
            (
                s.account.email.as_str(),
                s.account.banned,
                s.one_time_prekeys,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("alice@x.org", false, 2), ("bob@x.org", true, 1)]
    );
    d.set_banned("bob@x.org", false).await.unwrap();
    assert!(!d.account("bob@x.org").await.unwrap().unwrap().banned);
}

/// Issue 12.3: deleting an account removes it with its prekeys, and the address can
/// be registered again with another key; "already banned" is told apart.
async fn i12_delete_then_register_again(f: Fixture) {
    let d = &f.directory;
    let old = register(d, "bob@x.org", 4).await;
    register(d, "carol@x.org", 2).await;
    assert!(d.set_banned("carol@x.org", true).await.unwrap());
    assert!(
        !d.set_banned("carol@x.org", true).await.unwrap(),
        "already banned"
    );
    assert!(d.set_banned("carol@x.org", false).await.unwrap());
    assert!(
        !d.set_banned("carol@x.org", false).await.unwrap(),
        "not banned"
    );
    d.delete("bob@x.org").await.unwrap();
    assert!(d.account("bob@x.org").await.unwrap().is_none());
    assert!(d.bundle("bob@x.org").await.unwrap().is_none());
    assert_eq!(d.prekey_count("bob@x.org").await.unwrap(), 0);
    assert!(matches!(
        d.delete("bob@x.org").await,
        Err(DirectoryError::UnknownAccount)
    ));
    let new = register(d, "bob@x.org", 1).await;
    let account = d.account("bob@x.org").await.unwrap().unwrap();
    assert_eq!(account.identity_key, new.key.verifying_key().to_bytes());
    assert_ne!(account.identity_key, old.key.verifying_key().to_bytes());
    assert_eq!(d.prekey_count("bob@x.org").await.unwrap(), 1);
    assert_eq!(
        d.prekey_count("carol@x.org").await.unwrap(),
        2,
        "others untouched"
    );
}

/// M4: a pending registration is stored apart from accounts, and activating it
/// creates the account or, for a taken address, replaces its key and prekeys while
/// keeping its ban.
async fn m4_pending_registrations(f: Fixture) {
    let d = &f.directory;
    let old = register(d, "bob@x.org", 3).await;
    d.set_banned("bob@x.org", true).await.unwrap();
    let new = Identity::generate("bob@x.org");
    let reg = new.registration(2);
    let pending = PendingRegistration {
        email: "bob@x.org".into(),
        identity_key: reg.identity_key.0,
        signed_prekey: reg.signed_prekey.clone(),
        one_time_prekeys: reg.one_time_prekeys.clone(),
        code_hash: [7; 32],
        expires_at: 9_000,
        attempts: 0,
        codes_sent: 1,
        codes_window_start: 1_000,
        created_at: 1_000,
    };
    d.put_pending(&pending).await.unwrap();
    assert_eq!(
        d.pending("bob@x.org").await.unwrap().as_ref(),
        Some(&pending)
    );
    // Still the old key until activation.
    let account = d.account("bob@x.org").await.unwrap().unwrap();
    assert_eq!(account.identity_key, *old.key.verifying_key().as_bytes());
    d.set_pending_attempts("bob@x.org", 2).await.unwrap();
    assert_eq!(d.pending("bob@x.org").await.unwrap().unwrap().attempts, 2);
    assert!(d.activate(&pending, 5_000).await.unwrap());
    assert_eq!(d.pending("bob@x.org").await.unwrap(), None);
    let account = d.account("bob@x.org").await.unwrap().unwrap();
    assert_eq!(account.identity_key, reg.identity_key.0);
    assert!(account.banned, "a re-registration keeps the ban");
    assert_eq!(d.prekey_count("bob@x.org").await.unwrap(), 2);

    let carol = Identity::generate("carol@x.org");
    let reg = carol.registration(1);
    let fresh = PendingRegistration {
        email: "carol@x.org".into(),
        identity_key: reg.identity_key.0,
        signed_prekey: reg.signed_prekey,
        one_time_prekeys: reg.one_time_prekeys,
        ..pending
    };
    d.put_pending(&fresh).await.unwrap();
    assert_eq!(d.account("carol@x.org").await.unwrap(), None);
    assert!(!d.activate(&fresh, 5_000).await.unwrap());
    assert!(d.bundle("carol@x.org").await.unwrap().is_some());
    d.put_pending(&fresh).await.unwrap();
    d.delete_pending("carol@x.org").await.unwrap();
    assert_eq!(d.pending("carol@x.org").await.unwrap(), None);
}

fn join_link(id: &[u8; 16]) -> String {
    format!(
        "e2ee:join?g={}&k={}",
        e2ee_proto::encode_b64(id),
        e2ee_proto::encode_b64(&[5; 32])
    )
}

async fn publish(
    d: &Directory,
    id: &[u8; 16],
    title: &str,
    by: &str,
    now_ms: u64,
) -> Result<u64, DirectoryError> {
    let link = join_link(id);
    d.publish_listing(
        NewListing {
            group_id: id,
            title,
            topic: "about it",
            member_count: 3,
            join_link: &link,
            published_by: by,
        },
        now_ms,
    )
    .await
}

async fn group_listings(f: Fixture) {
    use e2ee_proto::{LISTING_TTL_MS, MAX_LISTINGS_PER_ACCOUNT};
    let d = &f.directory;
    let t0 = 1_000_000;
    assert_eq!(
        publish(d, &[2; 16], "rust", "alice@x.org", t0)
            .await
            .unwrap(),
        t0 + LISTING_TTL_MS
    );
    publish(d, &[1; 16], "go", "bob@x.org", t0).await.unwrap();
    // A refresh by the publisher updates the listing and its expiry.
    let refreshed = publish(d, &[2; 16], "rust-lang", "alice@x.org", t0 + 10).await;
    assert_eq!(refreshed.unwrap(), t0 + 10 + LISTING_TTL_MS);
    let page = d.listings(None, 10, t0 + 20).await.unwrap();
    let titles: Vec<&str> = page.iter().map(|l| l.title.as_str()).collect();
    assert_eq!(titles, ["go", "rust-lang"], "group id order");
    assert_eq!(page[1].published_by, "alice@x.org");
    assert_eq!(page[1].updated_at, t0 + 10);
    assert_eq!(page[1].member_count, 3);
    assert_eq!(page[1].join_link, join_link(&[2; 16]));

    // Another account can neither overwrite nor remove it, and the failed publish
    // changed nothing.
    let taken = publish(d, &[2; 16], "mine now", "mallory@x.org", t0 + 30).await;
    assert!(
        matches!(&taken, Err(DirectoryError::ListingTaken { published_by }) if published_by == "alice@x.org"),
        "{taken:?}"
    );
    let removed = d
        .unpublish_listing(&[2; 16], "mallory@x.org", t0 + 30)
        .await;
    assert!(
        matches!(removed, Err(DirectoryError::ListingTaken { .. })),
        "{removed:?}"
    );
    assert_eq!(d.listings(None, 10, t0 + 40).await.unwrap(), page);

    // Paging: `after` continues past the last id of the previous page.
    let first = d.listings(None, 1, t0 + 40).await.unwrap();
    assert_eq!(first[0].title, "go");
    let second = d.listings(Some(&[1; 16]), 1, t0 + 40).await.unwrap();
    assert_eq!(second[0].title, "rust-lang");
    assert!(
        d.listings(Some(&[2; 16]), 1, t0 + 40)
            .await
            .unwrap()
            .is_empty()
    );

    // The owner removes it; removing it again says there is none.
    d.unpublish_listing(&[2; 16], "alice@x.org", t0 + 50)
        .await
        .unwrap();
    let again = d.unpublish_listing(&[2; 16], "alice@x.org", t0 + 50).await;
    assert!(
        matches!(again, Err(DirectoryError::UnknownListing)),
        "{again:?}"
    );

    // Bounded per account.
    for i in 0..MAX_LISTINGS_PER_ACCOUNT {
        let id = [u8::try_from(i).unwrap() + 100; 16];
        publish(d, &id, "many", "carol@x.org", t0).await.unwrap();
    }
    let over = publish(d, &[99; 16], "one more", "carol@x.org", t0).await;
    assert!(
        matches!(over, Err(DirectoryError::TooManyListings)),
        "{over:?}"
    );
    // Refreshing one of them is not a new one.
    publish(d, &[100; 16], "many", "carol@x.org", t0 + 5)
        .await
        .unwrap();

    // Unrefreshed listings expire: unlisted, then swept by the next publish, after
    // which another account may publish the group.
    let later = t0 + 3 + LISTING_TTL_MS;
    let live = d.listings(None, 100, later).await.unwrap();
    assert_eq!(live.len(), 1, "only the refreshed one is left: {live:?}");
    assert_eq!(live[0].group_id.0, [100; 16]);
    publish(d, &[1; 16], "go again", "dave@x.org", later)
        .await
        .unwrap();
    let now_listed = d.listings(None, 100, later).await.unwrap();
    assert_eq!(now_listed[0].published_by, "dave@x.org");
    assert_eq!(now_listed.len(), 2);
}

macro_rules! directory_suite {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test]
            async fn accounts_and_duplicates() {
                super::accounts_and_duplicates(super::$backend().await).await
            }
            #[tokio::test]
            async fn bundles_and_prekeys() {
                super::bundles_and_prekeys(super::$backend().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_fetches_never_share_a_prekey() {
                super::concurrent_fetches_never_share_a_prekey(super::$backend().await).await
            }
            #[tokio::test]
            async fn bans_and_listing() {
                super::bans_and_listing(super::$backend().await).await
            }
            #[tokio::test]
            async fn i12_delete_then_register_again() {
                super::i12_delete_then_register_again(super::$backend().await).await
            }

            #[tokio::test]
            async fn group_listings() {
                super::group_listings(super::$backend().await).await
            }

            #[tokio::test]
            async fn m4_pending_registrations() {
                super::m4_pending_registrations(super::$backend().await).await
            }
        }
    };
}

directory_suite!(sqlite);
directory_suite!(postgres);
