//! Versions on request and their snapshots; shares, their expiry and revocation, and the share
//! link.

use super::{add_content, finalized_packet, new_packet};
use crate::backends::Backends;
use crate::harness::{Frame, install};
use serde_json::{Value, json};
use std::time::Duration;
use test_shards::PACKETS;

async fn versions_on_request_and_snapshots(backends: Backends) {
    let Some(data) = backends.data_dir("versions_on_request", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let id = new_packet(&frame, "versioned").await;
    add_content(&frame, &id, "entity", "e-1").await;

    // A version of a draft, whenever asked: the next number, with a snapshot in storage.
    let (status, version) = frame
        .call(
            "POST",
            &format!("/api/packets/{id}/versions"),
            Some(json!({"changes_summary": "first look"})),
        )
        .await;
    assert_eq!(status, 201, "{version}");
    assert_eq!(version["version_number"], 2);
    assert_eq!(version["changes_summary"], "first look");
    let (status, snapshot) = frame
        .call("GET", &format!("/api/packets/{id}/versions/2"), None)
        .await;
    assert_eq!(status, 200, "{snapshot}");
    assert_eq!(snapshot["packet"]["id"], id.as_str());
    assert_eq!(snapshot["packet"]["version"], 2);
    assert_eq!(snapshot["contents"][0]["content_id"], "e-1");

    // The draft still changes; the snapshot does not.
    add_content(&frame, &id, "entity", "e-2").await;
    let (status, finalized) = frame
        .call("POST", &format!("/api/packets/{id}/finalize"), None)
        .await;
    assert_eq!(status, 200, "{finalized}");
    assert_eq!(finalized["version"], 3);
    let (_, snapshot) = frame
        .call("GET", &format!("/api/packets/{id}/versions/2"), None)
        .await;
    assert_eq!(snapshot["contents"].as_array().map(Vec::len), Some(1));
    let (status, snapshot) = frame
        .call("GET", &format!("/api/packets/{id}/versions/3"), None)
        .await;
    assert_eq!(status, 200, "{snapshot}");
    assert_eq!(snapshot["contents"].as_array().map(Vec::len), Some(2));
    assert_eq!(snapshot["packet"]["checksum"], finalized["checksum"]);
    let (_, versions) = frame
        .call("GET", &format!("/api/packets/{id}/versions"), None)
        .await;
    assert_eq!(versions["total"], 2, "{versions}");

    // Errors: a missing or bad summary, unknown packets and versions, an archived packet.
    let path = format!("/api/packets/{id}/versions");
    let (status, err) = frame.call("POST", &path, Some(json!({}))).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["fields"]["changes_summary"], "required");
    let (status, err) = frame
        .call("POST", &path, Some(json!({"changes_summary": 5})))
        .await;
    assert_eq!(status, 422, "{err}");
    assert!(
        err["error"]["fields"]["changes_summary"].is_string(),
        "{err}"
    );
    let (status, _) = frame
        .call(
            "POST",
            "/api/packets/nope/versions",
            Some(json!({"changes_summary": "x"})),
        )
        .await;
    assert_eq!(status, 404);
    for n in ["9", "abc", "-1"] {
        let (status, err) = frame
            .call("GET", &format!("/api/packets/{id}/versions/{n}"), None)
            .await;
        assert_eq!(status, 404, "{n}: {err}");
    }
    let (status, _) = frame
        .call("GET", "/api/packets/nope/versions/1", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = frame
        .call("DELETE", &format!("/api/packets/{id}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, err) = frame
        .call("POST", &path, Some(json!({"changes_summary": "late"})))
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "invalid_state");
    frame.stop();
}

async fn shares_expire_and_revoke(backends: Backends) {
    let Some(data) = backends.data_dir("shares_expire_and_revoke", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let draft = new_packet(&frame, "private draft").await;
    let id = finalized_packet(&frame, "shared").await;
    let share_path = format!("/api/packets/{id}/share");

    // Errors first: drafts cannot be shared, bodies are checked, the expiry must be ahead.
    let (status, err) = frame
        .call(
            "POST",
            &format!("/api/packets/{draft}/share"),
            Some(json!({"shared_with": "bob"})),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    let (status, err) = frame
        .call(
            "POST",
            &share_path,
            Some(json!({"shared_with": "", "permissions": "own", "expires_at": "soon"})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    for field in ["shared_with", "permissions", "expires_at"] {
        assert!(err["error"]["fields"][field].is_string(), "{field}: {err}");
    }
    let (status, err) = frame
        .call(
            "POST",
            &share_path,
            Some(json!({"shared_with": "bob", "expires_at": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    let (status, _) = frame
        .call(
            "POST",
            "/api/packets/nope/share",
            Some(json!({"shared_with": "bob"})),
        )
        .await;
    assert_eq!(status, 404);

    let share = |body: Value| {
        let frame = &frame;
        let share_path = &share_path;
        async move {
            let (status, share) = frame.call("POST", share_path, Some(body)).await;
            assert_eq!(status, 201, "{share}");
            assert_eq!(share["state"], "active");
            share
        }
    };
    let viewer = share(json!({"shared_with": "viewer"})).await;
    let editor = share(json!({"shared_with": "editor", "permissions": "edit"})).await;
    // Two to three seconds ahead, written with a +01:00 offset: stored in UTC.
    let soon = {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3;
        let local = unix + 3600;
        let (y, mo, d) = civil_from_days((local / 86_400) as i64);
        let (h, m, s) = ((local / 3600) % 24, (local / 60) % 60, local % 60);
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}+01:00")
    };
    let brief = share(json!({"shared_with": "brief", "expires_at": soon})).await;
    assert!(
        brief["expires_at"].as_str().unwrap().ends_with('Z'),
        "{brief}"
    );
    let (status, packet) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!((status, packet["status"].as_str()), (200, Some("shared")));

    // The link shows the packet read-only, and nothing beyond it.
    let token = viewer["access_token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    let (status, shared) = frame
        .call("GET", &format!("/api/packets/shared/{token}"), None)
        .await;
    assert_eq!(status, 200, "{shared}");
    assert_eq!(shared["packet"]["id"], id.as_str());
    assert_eq!(shared["read_only"], true);
    assert_eq!(shared["share"]["permissions"], "view");
    assert_eq!(shared["contents"].as_array().map(Vec::len), Some(2));
    let text = shared.to_string();
    for leak in [
        "owner-only",
        "access_token",
        editor["access_token"].as_str().unwrap(),
        draft.as_str(),
    ] {
        assert!(!text.contains(leak), "{leak} leaked: {shared}");
    }
    // Permissions are checked on the link; even `edit` cannot change a shared packet.
    let link = format!("/api/packets/shared/{token}");
    let (status, err) = frame.call("PUT", &link, Some(json!({"name": "x"}))).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("permission_denied")),
        "{err}"
    );
    let (status, err) = frame
        .call("POST", &link, Some(json!({"comment": "x"})))
        .await;
    assert_eq!(status, 403, "{err}");
    let edit_link = format!(
        "/api/packets/shared/{}",
        editor["access_token"].as_str().unwrap()
    );
    let (status, shared) = frame.call("GET", &edit_link, None).await;
    assert_eq!(status, 200, "{shared}");
    assert_eq!(
        shared["share"]["allowed"],
        json!(["view", "comment", "edit"])
    );
    let (status, err) = frame
        .call("PUT", &edit_link, Some(json!({"name": "x"})))
        .await;
    assert_eq!(status, 409, "{err}");

    // Comments: the one write a link allows, for `comment` and `edit`, not `view`.
    let (status, err) = frame
        .call(
            "POST",
            &format!("{link}/comments"),
            Some(json!({"body": "hi"})),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("permission_denied")),
        "{err}"
    );
    let (status, err) = frame
        .call(
            "POST",
            &format!("{edit_link}/comments"),
            Some(json!({"body": ""})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert!(err["error"]["fields"]["body"].is_string(), "{err}");
    let (status, comment) = frame
        .call(
            "POST",
            &format!("{edit_link}/comments"),
            Some(json!({"body": "see page 3"})),
        )
        .await;
    assert_eq!(status, 201, "{comment}");
    assert_eq!(comment["author"], "editor", "{comment}");
    assert_eq!(comment["packet_id"], id.as_str(), "{comment}");
    assert!(!comment.to_string().contains(token), "{comment}");
    for listing in [
        format!("{link}/comments"),
        format!("/api/packets/{id}/comments"),
    ] {
        let (status, comments) = frame.call("GET", &listing, None).await;
        assert_eq!(status, 200, "{comments}");
        assert_eq!(comments["total"], 1, "{listing}: {comments}");
        assert_eq!(comments["items"][0]["body"], "see page 3");
    }

    // Unknown and malformed tokens open nothing, alike.
    for bad in [
        "0".repeat(64),
        "zz".to_string(),
        format!("{token}0"),
        token.to_uppercase(),
    ] {
        let (status, _) = frame
            .call("GET", &format!("/api/packets/shared/{bad}"), None)
            .await;
        assert_eq!(status, 404, "{bad}");
    }

    // Expiry: once past, the token opens nothing and the listing marks the share expired.
    let brief_link = format!(
        "/api/packets/shared/{}",
        brief["access_token"].as_str().unwrap()
    );
    let (status, _) = frame.call("GET", &brief_link, None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, err) = frame.call("GET", &brief_link, None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (410, Some("share_expired")),
        "{err}"
    );
    let (status, shares) = frame
        .call("GET", &format!("/api/packets/{id}/shares"), None)
        .await;
    assert_eq!(status, 200);
    let mut states: Vec<(&str, &str)> = shares["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["shared_with"].as_str().unwrap(),
                s["state"].as_str().unwrap(),
            )
        })
        .collect();
    states.sort();
    assert_eq!(
        states,
        vec![
            ("brief", "expired"),
            ("editor", "active"),
            ("viewer", "active")
        ]
    );

    // Revoking kills the token at once.
    let (status, _) = frame
        .call(
            "DELETE",
            &format!(
                "/api/packets/{id}/shares/{}",
                viewer["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = frame.call("GET", &link, None).await;
    assert_eq!(status, 404);
    let (status, _) = frame
        .call(
            "DELETE",
            &format!(
                "/api/packets/{id}/shares/{}",
                viewer["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = frame.call("GET", "/api/packets/nope/shares", None).await;
    assert_eq!(status, 404);

    // An archived packet is no longer open to its links.
    let (status, _) = frame
        .call("POST", &format!("/api/packets/{id}/archive"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = frame.call("GET", &edit_link, None).await;
    assert_eq!(status, 410);
    frame.stop();
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

crate::on_both_backends!(versions_on_request_and_snapshots, shares_expire_and_revoke);
