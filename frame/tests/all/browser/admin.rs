//! The operator pages in the browser: sign in with the admin token, revoke and restore a grant
//! (the shard's next call follows), the events page; and what the admin API refuses without a
//! session or without the CSRF header.

use super::Browser;
use crate::harness::{Frame, admin_token, cpu_heavy, data_dir, install};
use serde_json::{Value, json};
use test_shards::{PACKETS, RECORDER};

const STORAGE_TOGGLE: &str = "button.grant-toggle[data-shard=packets][data-service=storage]";

/// Signs in through `/admin`'s form and waits for the overview.
async fn sign_in(browser: &Browser, token: &str) {
    browser.goto("/admin").await;
    browser.wait("form#signin").await;
    browser.type_into("#signin-token", token).await;
    browser.click("#signin-submit").await;
    browser.wait("#signout").await;
}

/// Exports packet `id` as JSON through the API: (status, body).
async fn export(frame: &Frame, id: &str) -> (u16, Value) {
    frame
        .call(
            "POST",
            &format!("/api/packets/{id}/export"),
            Some(json!({"format": "json"})),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_revokes_a_grant_and_the_next_call_is_denied() {
    let _heavy = cpu_heavy().await;
    let data = data_dir("");
    // The recorder subscribes to packets' events: the events page has a subscriber to show.
    install(data.path(), &[&PACKETS, &RECORDER]);
    let frame = Frame::start(data.path());
    let token = admin_token(data.path());
    let (status, created) = frame
        .call("POST", "/api/packets/", Some(json!({"name": "to export"})))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (status, body) = export(&frame, &id).await;
    assert_eq!(status, 201, "storage is granted at first: {body}");
    let Some(browser) = Browser::start("operator", &frame).await else {
        return;
    };

    // A wrong token is refused on the form, with a reason.
    browser.goto("/admin").await;
    browser.wait("form#signin").await;
    browser.screenshot("admin-signin").await;
    browser.type_into("#signin-token", "not-the-token").await;
    browser.click("#signin-submit").await;
    browser
        .until("the sign-in error is shown", async || {
            browser.exists("#signin-error:not([hidden])").await
                && !browser.text("#signin-error").await.is_empty()
        })
        .await;
    assert!(!browser.exists("#signout").await);

    sign_in(&browser, &token).await;
    // The overview: health and the services in use.
    browser.wait("#frame-health").await;
    browser.screenshot("admin-overview").await;
    // The cookie is HttpOnly: the page's scripts cannot read it.
    let cookies = browser.js("return document.cookie;", vec![]).await;
    assert!(
        !cookies
            .as_str()
            .unwrap_or_default()
            .contains("arkham_session"),
        "{cookies}"
    );

    browser.click("a.nav-admin[href='/admin/shards']").await;
    browser.wait("tr.shard-row[data-shard=packets]").await;
    assert_eq!(browser.text(STORAGE_TOGGLE).await, "Revoke");
    assert!(
        browser
            .exists(&format!("{STORAGE_TOGGLE}[data-granted=true]"))
            .await
    );
    browser.screenshot("admin-shards").await;

    browser.click(STORAGE_TOGGLE).await;
    browser
        .until("the storage toggle offers Restore", async || {
            browser
                .exists(&format!("{STORAGE_TOGGLE}[data-granted=false]"))
                .await
                && browser.text(STORAGE_TOGGLE).await == "Restore"
        })
        .await;
    let (status, body) = export(&frame, &id).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
    // The rest of the shard works on: only storage was revoked.
    let (status, body) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    browser.screenshot("admin-shards-revoked").await;

    browser.click(STORAGE_TOGGLE).await;
    browser
        .until("the storage toggle offers Revoke again", async || {
            browser
                .exists(&format!("{STORAGE_TOGGLE}[data-granted=true]"))
                .await
                && browser.text(STORAGE_TOGGLE).await == "Revoke"
        })
        .await;
    let (status, body) = export(&frame, &id).await;
    assert_eq!(status, 201, "restored: {body}");

    // The events page: the log, its subscribers and how far behind each is, dead letters,
    // recent events (what retention has kept: it trims what every subscriber has passed).
    browser.click("a.nav-admin[href='/admin/events']").await;
    browser.wait("#log-status").await;
    browser.wait("#lag .lag-row[data-shard=recorder]").await;
    browser.wait("#dead-letters").await;
    browser.wait("#recent-events").await;
    browser.screenshot("admin-events").await;

    // Signing out ends the session: the admin API refuses the page again.
    browser.click("#signout").await;
    browser.wait("form#signin").await;
    let refused = browser
        .fetch("GET", "/api/frame/admin/shards", json!({}), None)
        .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_refuses_without_the_session_or_the_csrf_header() {
    let _heavy = cpu_heavy().await;
    let data = data_dir("");
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let token = admin_token(data.path());
    let grants = "/api/frame/admin/shards/packets/grants";
    let revoke =
        json!({"services": ["database", "events"], "publishes": ["packets.*"], "subscribes": []})
            .to_string();

    // Plain HTTP first: no credentials, then a session cookie without the CSRF header.
    let (status, body) = frame.call("GET", "/api/frame/admin/shards", None).await;
    assert_eq!(status, 401, "{body}");
    let response = frame
        .client
        .post(format!("{}/api/frame/session", frame.base))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let response = frame
        .client
        .put(format!("{}{grants}", frame.base))
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .body(revoke.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "csrf_failed", "{body}");

    let Some(browser) = Browser::start("admin-refuses", &frame).await else {
        return;
    };
    // A fresh browser has no session: the page's own request is refused, the page asks to sign in.
    browser.goto("/admin/shards").await;
    browser.wait("form#signin").await;
    assert!(!browser.exists("#shards-table").await);
    assert!(!browser.exists(STORAGE_TOGGLE).await);
    let refused = browser
        .fetch("GET", "/api/frame/admin/shards", json!({}), None)
        .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let refused = browser
        .fetch(
            "PUT",
            grants,
            json!({"content-type": "application/json"}),
            Some(&revoke),
        )
        .await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    // Signed in, the cookie goes along; a change without the CSRF header is still refused.
    sign_in(&browser, &token).await;
    let allowed = browser
        .fetch("GET", "/api/frame/admin/shards", json!({}), None)
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let refused = browser
        .fetch(
            "PUT",
            grants,
            json!({"content-type": "application/json"}),
            Some(&revoke),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "csrf_failed");
    let refused = browser
        .fetch(
            "PUT",
            grants,
            json!({"content-type": "application/json", "x-arkham-csrf": "0".repeat(64)}),
            Some(&revoke),
        )
        .await;
    assert_eq!(refused.status, 403, "a wrong token: {}", refused.body);
    // Nothing changed: storage is still granted.
    let granted = frame
        .client
        .get(format!("{}/api/frame/admin/shards", frame.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let packets = granted["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "packets")
        .unwrap()
        .clone();
    assert!(
        packets["granted"]["services"]
            .as_array()
            .unwrap()
            .contains(&json!("storage")),
        "{packets}"
    );
    // With the page's own CSRF token the same change goes through.
    let session = browser
        .fetch("GET", "/api/frame/session", json!({}), None)
        .await
        .json();
    assert_eq!(session["signed_in"], true, "{session}");
    let csrf = session["csrf"].as_str().unwrap();
    let accepted = browser
        .fetch(
            "PUT",
            grants,
            json!({"content-type": "application/json", "x-arkham-csrf": csrf}),
            Some(&revoke),
        )
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    browser.close().await;
}
