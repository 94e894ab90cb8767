//! The public group directory over the real router: publish, list, page, refresh,
//! unpublish, and every malformed request a 4xx with the typed JSON error, never a 5xx.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use axum::http::{Method, StatusCode};
use common::{Backend, TestRelay};
use e2ee_proto::{MAX_DIRECTORY_PAGE, MAX_LISTING_MEMBERS, MAX_LISTING_TITLE_BYTES, encode_b64};
use serde_json::{Value, json};

fn link(id: u8) -> String {
    format!(
        "e2ee:join?g={}&k={}",
        encode_b64(&[id; 16]),
        encode_b64(&[7; 32])
    )
}

fn listing(id: u8, title: &str) -> Value {
    json!({"title": title, "topic": "a topic", "member_count": 5, "join_link": link(id)})
}

fn assert_error(status: StatusCode, answer: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{answer}");
    assert_eq!(answer["error"], code, "{answer}");
    assert!(
        answer["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
}

#[tokio::test]
async fn publish_list_page_and_unpublish() {
    let relay = TestRelay::start(Backend::Sqlite).await;
    let alice = relay.register("alice@example.org", 0).await;
    let bob = relay.register("bob@example.org", 0).await;
    for (id, title) in [(3, "three"), (1, "one"), (2, "two")] {
        let (s, a) = relay
            .call(
                Some(&alice),
                Method::POST,
                "/v1/directory/groups",
                Some(listing(id, title)),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{a}");
        assert_eq!(a["group_id"], encode_b64(&[id; 16]));
        assert!(a["expires_at"].as_u64().is_some(), "{a}");
    }
    // Anyone registered reads it, a page at a time.
    let (s, page) = relay
        .call(
            Some(&bob),
            Method::GET,
            "/v1/directory/groups?limit=2",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let titles: Vec<&str> = page["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["one", "two"]);
    assert_eq!(page["groups"][0]["published_by"], "alice@example.org");
    assert_eq!(page["groups"][0]["join_link"], link(1));
    assert_eq!(page["groups"][0]["member_count"], 5);
    let next = page["next"].as_str().unwrap().to_owned();
    let (s, rest) = relay
        .call(
            Some(&bob),
            Method::GET,
            &format!("/v1/directory/groups?limit=2&after={next}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rest}");
    assert_eq!(rest["groups"].as_array().unwrap().len(), 1);
    assert_eq!(rest["groups"][0]["title"], "three");
    assert!(rest.get("next").is_none(), "{rest}");

    // Bob may not take over or remove Alice's listing.
    let (s, a) = relay
        .call(
            Some(&bob),
            Method::POST,
            "/v1/directory/groups",
            Some(listing(1, "hijacked")),
        )
        .await;
    assert_error(s, &a, StatusCode::CONFLICT, "listing_taken");
    let one = encode_b64(&[1; 16]);
    let path = format!("/v1/directory/groups/{one}");
    let (s, a) = relay.call(Some(&bob), Method::DELETE, &path, None).await;
    assert_error(s, &a, StatusCode::CONFLICT, "listing_taken");
    let (s, a) = relay.call(Some(&alice), Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["group_id"], one);
    let (s, a) = relay.call(Some(&alice), Method::DELETE, &path, None).await;
    assert_error(s, &a, StatusCode::NOT_FOUND, "unknown_listing");
    let (_, page) = relay
        .call(Some(&bob), Method::GET, "/v1/directory/groups", None)
        .await;
    assert_eq!(page["groups"].as_array().unwrap().len(), 2, "{page}");
}

#[tokio::test]
async fn malformed_directory_requests_are_4xx() {
    let relay = TestRelay::start(Backend::Sqlite).await;
    let alice = relay.register("alice@example.org", 0).await;
    let publish = |body: Value| {
        relay.call(
            Some(&alice),
            Method::POST,
            "/v1/directory/groups",
            Some(body),
        )
    };
    let long_title = "t".repeat(MAX_LISTING_TITLE_BYTES + 1);
    let cases = [
        (json!({"title": "x"}), "invalid_request"),
        (
            json!({"title": "x", "member_count": 1, "join_link": "https://x"}),
            "bad_join_link",
        ),
        (
            json!({"title": "x", "member_count": 1,
                   "join_link": format!("e2ee:join?g={}&k={}", encode_b64(&[1; 15]), encode_b64(&[1; 32]))}),
            "bad_join_link",
        ),
        (
            json!({"title": "", "member_count": 1, "join_link": link(1)}),
            "invalid_request",
        ),
        (
            json!({"title": long_title, "member_count": 1, "join_link": link(1)}),
            "invalid_request",
        ),
        (
            json!({"title": "bell\u{7}", "member_count": 1, "join_link": link(1)}),
            "invalid_request",
        ),
        (
            json!({"title": "x", "topic": "esc\u{1b}[2J", "member_count": 1, "join_link": link(1)}),
            "invalid_request",
        ),
        (
            json!({"title": "x", "member_count": 0, "join_link": link(1)}),
            "invalid_request",
        ),
        (
            json!({"title": "x", "member_count": MAX_LISTING_MEMBERS + 1, "join_link": link(1)}),
            "invalid_request",
        ),
        (
            json!({"title": "x", "member_count": 1, "join_link": link(1), "extra": 1}),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        let (s, a) = publish(body.clone()).await;
        assert_error(s, &a, StatusCode::BAD_REQUEST, code);
    }
    let (s, a) = relay
        .call_raw(
            Some(&alice),
            Method::POST,
            "/v1/directory/groups",
            b"{nope".to_vec(),
            common::unique_now_ms(),
        )
        .await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "malformed_json");
    for query in [
        "limit=0".to_owned(),
        format!("limit={}", MAX_DIRECTORY_PAGE + 1),
        "limit=ten".to_owned(),
        "after=short".to_owned(),
        "after=AA==".to_owned(),
        "colour=blue".to_owned(),
    ] {
        let (s, a) = relay
            .call(
                Some(&alice),
                Method::GET,
                &format!("/v1/directory/groups?{query}"),
                None,
            )
            .await;
        assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_query");
    }
    let (s, a) = relay
        .call(
            Some(&alice),
            Method::DELETE,
            "/v1/directory/groups/not-an-id",
            None,
        )
        .await;
    assert_error(s, &a, StatusCode::BAD_REQUEST, "bad_path");
    // Unsigned: the directory is for registered accounts, like every other route.
    let (s, a) = relay
        .call(None, Method::GET, "/v1/directory/groups", None)
        .await;
    assert_error(s, &a, StatusCode::UNAUTHORIZED, "missing_auth");
    // Nothing of the above was stored.
    let (s, page) = relay
        .call(Some(&alice), Method::GET, "/v1/directory/groups", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["groups"], json!([]));
}
