//! The dashboard over plain HTTP: what the frame serves and refuses; the browser tests
//! (`browser`) drive the same pages in Chromium. Here: the shell on every dashboard route, its
//! policy, embedded files and icons, the operator session (cookie, CSRF, origin) and what a
//! shard's answers may not do (set the session, escape the sandbox policy, see the cookie).

use crate::harness::{Frame, admin_token, arkham, data_dir, install, manifest_of, package_with};
use reqwest::header;
use serde_json::{Value, json};
use test_shards::{ECHO, PACKETS, RECORDER};

/// Installs echo under `name` with a navigation entry, so that it has dashboard routes.
fn install_echo_with_nav(data: &std::path::Path, name: &str, route: &str, label: &str) {
    let mut manifest = manifest_of(&ECHO);
    manifest.name = name.to_string();
    manifest.navigation = Some(
        toml::from_str(&format!(
            "category = \"Data\"\nlabel = {label:?}\nroute = {route:?}\nicon = \"NoSuchIcon\"\n"
        ))
        .unwrap(),
    );
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join(format!("{name}.wasm"));
    package_with(&ECHO, &manifest, &path);
    let (ok, out, err) = arkham(data, &["shard", "add", path.to_str().unwrap(), "--yes"]);
    assert!(ok, "{out}{err}");
}

async fn get(frame: &Frame, path: &str, accept: &str) -> reqwest::Response {
    frame
        .client
        .get(format!("{}{path}", frame.base))
        .header(header::ACCEPT, accept)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_route_is_the_shell_under_a_strict_policy() {
    let data = data_dir("");
    install(data.path(), &[&PACKETS]);
    install_echo_with_nav(data.path(), "notes", "/notes", "Notes");
    let frame = Frame::start(data.path());

    for path in [
        "/",
        "/packets",
        "/packets/draft",
        "/packets/0b1c/anything",
        "/notes",
        "/admin",
        "/admin/shards",
        "/shards/notes",
    ] {
        let response = get(&frame, path, "text/html").await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        let body = response.text().await.unwrap();
        assert!(body.contains("/static/app.js"), "{path}: {body}");
        // The shell carries no data: everything shown comes from the APIs, as text.
        assert!(!body.contains("packets"), "{path}");
    }

    // A path no page claims: the shell's "not found" for a browser, JSON for API clients.
    let response = get(&frame, "/nowhere", "text/html,application/xhtml+xml").await;
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("/static/app.js"));
    let (status, body) = frame.call("GET", "/nowhere", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    // Not a page: other methods, and the APIs, keep their JSON answers.
    let (status, body) = frame.call("POST", "/packets", Some(json!({}))).await;
    assert_eq!(status, 404, "{body}");
    let response = get(&frame, "/api/frame/nope", "text/html").await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");

    // Files and icons are embedded; unchanged ones revalidate to 304.
    for (file, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("arkham-ui.js", "text/javascript; charset=utf-8"),
    ] {
        let response = get(&frame, &format!("/static/{file}"), "*/*").await;
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], kind);
        let etag = response.headers()[header::ETAG].clone();
        let again = frame
            .client
            .get(format!("{}/static/{file}", frame.base))
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{file}");
    }
    let (status, _) = frame.call("GET", "/static/../admin-token", None).await;
    assert_eq!(status, 404);
    let response = get(&frame, "/static/icons/Package.svg", "*/*").await;
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/svg+xml");
    assert!(response.headers().get("x-arkham-icon").is_none());
    assert!(response.text().await.unwrap().contains("<path"));
    let response = get(&frame, "/static/icons/NoSuchIcon.svg", "*/*").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-arkham-icon"], "fallback");
}

/// Signs in with `token`; returns the response.
async fn sign_in(frame: &Frame, token: &str) -> reqwest::Response {
    frame
        .client
        .post(format!("{}/api/frame/session", frame.base))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_session_is_a_cookie_with_csrf_protection() {
    let data = data_dir("");
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let token = admin_token(data.path());

    // Without credentials, the admin API refuses.
    let (status, body) = frame.call("GET", "/api/frame/admin/shards", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sign in")
    );

    // A wrong token makes no session.
    let wrong = sign_in(&frame, "not-the-token").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());

    let response = sign_in(&frame, &token).await;
    assert_eq!(response.status(), 200);
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/api/frame"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_string();
    assert!(session.starts_with("arkham_session="));
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrf"].as_str().unwrap().to_string();
    assert!(!body.to_string().contains(&token));

    let with_cookie = |method: reqwest::Method, path: &str| {
        frame
            .client
            .request(method, format!("{}{path}", frame.base))
            .header(header::COOKIE, &session)
    };
    // The session state tells the frame's page its CSRF token again (after a reload).
    let state: Value = with_cookie(reqwest::Method::GET, "/api/frame/session")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state, json!({ "signed_in": true, "csrf": csrf }));

    // Reads work with the cookie alone.
    let overview = with_cookie(reqwest::Method::GET, "/api/frame/admin/shards")
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), 200);
    let overview: Value = overview.json().await.unwrap();
    let packets = &overview["shards"][0];
    assert_eq!(packets["name"], "packets");
    assert_eq!(packets["status"], "running");
    assert!(
        packets["granted"]["services"]
            .as_array()
            .unwrap()
            .contains(&json!("storage"))
    );
    assert!(packets["limits"]["memory_bytes"].as_u64().unwrap() > 0);

    // A change with the cookie but without the CSRF header, or with a wrong one, is refused
    // and changes nothing.
    let revoke =
        json!({ "services": ["database", "events"], "publishes": ["packets.*"], "subscribes": [] });
    let path = "/api/frame/admin/shards/packets/grants";
    for csrf_header in [None, Some("0".repeat(64))] {
        let mut request = with_cookie(reqwest::Method::PUT, path).json(&revoke);
        if let Some(value) = &csrf_header {
            request = request.header("x-arkham-csrf", value);
        }
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), 403, "{csrf_header:?}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "csrf_failed");
    }
    // Another site's page cannot make one either, even with the token (SameSite aside).
    let cross = with_cookie(reqwest::Method::PUT, path)
        .header("x-arkham-csrf", &csrf)
        .header(header::ORIGIN, "http://evil.example")
        .json(&revoke)
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let (_, grants) = frame.call("GET", "/api/frame/shards", None).await;
    assert_eq!(grants["shards"][0]["status"], "running");
    let unchanged: Value = with_cookie(reqwest::Method::GET, path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        unchanged["granted"]["services"]
            .as_array()
            .unwrap()
            .contains(&json!("storage")),
        "{unchanged}"
    );

    // With the header from the same origin it goes through.
    let origin = frame.base.clone();
    let done = with_cookie(reqwest::Method::PUT, path)
        .header("x-arkham-csrf", &csrf)
        .header(header::ORIGIN, origin)
        .json(&json!({ "services": ["database", "events"], "publishes": ["packets.*"], "subscribes": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let (status, body) = frame
        .call("POST", "/api/packets/", Some(json!({ "name": "p" })))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let (status, body) = frame
        .call(
            "POST",
            &format!("/api/packets/{id}/export"),
            Some(json!({ "format": "json" })),
        )
        .await;
    assert_eq!(status, 503, "storage is revoked: {body}");

    // Signing out needs the CSRF header too, and ends the session for every later call.
    let refused = with_cookie(reqwest::Method::DELETE, "/api/frame/session")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let out = with_cookie(reqwest::Method::DELETE, "/api/frame/session")
        .header("x-arkham-csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    assert!(
        out.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = with_cookie(reqwest::Method::GET, "/api/frame/admin/shards")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);

    // The bearer token keeps working without a session, and a wrong one is refused even
    // alongside a cookie.
    let bearer = frame
        .client
        .get(format!("{}/api/frame/admin/shards", frame.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let fresh = sign_in(&frame, &token).await.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mixed = frame
        .client
        .get(format!("{}/api/frame/admin/shards", frame.base))
        .header(header::COOKIE, &fresh)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(mixed.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_cannot_see_or_set_the_session_nor_lift_its_sandbox() {
    let data = data_dir("");
    install(data.path(), &[&ECHO]);
    let frame = Frame::start(data.path());
    let token = admin_token(data.path());
    let session = sign_in(&frame, &token).await.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    // Even a client that sends the session cookie to a shard does not hand it over.
    let echoed: Value = frame
        .client
        .get(format!("{}/api/echo/echo", frame.base))
        .header(header::COOKIE, format!("theme=dark; {session}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headers = echoed["headers"].to_string();
    assert!(!headers.contains("arkham_session"), "{headers}");
    assert!(headers.contains("theme=dark"), "{headers}");

    // A shard's answer may not plant or clear the session, and always carries the sandbox.
    let planted = frame
        .client
        .get(format!(
            "{}/api/echo/header?name=set-cookie&value=arkham_session%3Dplanted%3B%20Path%3D%2Fapi%2Fframe",
            frame.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(planted.status(), 200);
    assert!(planted.headers().get(header::SET_COOKIE).is_none());
    let policies: Vec<_> = planted
        .headers()
        .get_all(header::CONTENT_SECURITY_POLICY)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        policies
            .iter()
            .any(|p| p.starts_with("sandbox allow-scripts")
                && !p.contains("allow-same-origin")
                && p.contains("connect-src 'none'")),
        "{policies:?}"
    );
    assert_eq!(planted.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    // A shard's own policy header cannot loosen it: the frame's is sent as well (browsers
    // enforce every policy).
    let loose = frame
        .client
        .get(format!(
            "{}/api/echo/header?name=content-security-policy&value=default-src%20*",
            frame.base
        ))
        .send()
        .await
        .unwrap();
    let policies: Vec<_> = loose
        .headers()
        .get_all(header::CONTENT_SECURITY_POLICY)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        policies.iter().any(|p| p.starts_with("sandbox ")),
        "{policies:?}"
    );
    // The frame's own errors on a shard's behalf carry it too.
    let missing = frame
        .client
        .get(format!("{}/api/nosuchshard/x", frame.base))
        .send()
        .await
        .unwrap();
    assert!(
        missing
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_see_recent_events_of_the_frame_and_of_one_shard() {
    // The recorder subscribes to packets' events, so the log keeps them (and adds its own).
    let data = data_dir("");
    install(data.path(), &[&PACKETS, &RECORDER]);
    let frame = Frame::start(data.path());
    let token = admin_token(data.path());
    // The recorder fails its deliveries, so retention keeps the events (it trims what every
    // subscriber has).
    let (status, _) = frame
        .call("PUT", "/api/recorder/fail", Some(json!({ "fail": true })))
        .await;
    assert_eq!(status, 200);
    for name in ["one", "two", "three"] {
        let (status, body) = frame
            .call("POST", "/api/packets/", Some(json!({ "name": name })))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let recent = |query: &'static str| {
        let request = frame
            .client
            .get(format!(
                "{}/api/frame/admin/events/recent{query}",
                frame.base
            ))
            .bearer_auth(&token);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let all = recent("?limit=2").await;
    assert_eq!(all["events"].as_array().unwrap().len(), 2, "{all}");
    let mine = recent("?shard=packets&limit=50").await;
    let events = mine["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{mine}");
    // Newest first.
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    for event in events {
        assert_eq!(event["source"], "packets");
        assert_eq!(event["name"], "packets.packet.created");
        assert!(
            event["payload"].as_str().unwrap().contains("\"name\""),
            "{event}"
        );
        assert_eq!(
            event["payload_bytes"].as_u64().unwrap() as usize,
            event["payload"].as_str().unwrap().len()
        );
    }
    let none = recent("?shard=nosuch").await;
    assert_eq!(none["events"], json!([]));
    let (status, _) = frame
        .call("GET", "/api/frame/admin/events/recent", None)
        .await;
    assert_eq!(status, 401);
}
