//! Packets' own page inside the dashboard (the sandboxed iframe, talking through the bridge):
//! create a draft, add an item, finalize, share; the API then agrees.

use super::Browser;
use crate::harness::{Frame, cpu_heavy, data_dir, install};
use serde_json::json;
use test_shards::PACKETS;

#[tokio::test(flavor = "multi_thread")]
async fn create_add_finalize_and_share_in_the_packets_page() {
    let _heavy = cpu_heavy().await;
    let data = data_dir("");
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    // One packet already there, so the list has a row to show.
    let (status, body) = frame
        .call(
            "POST",
            "/api/packets/",
            Some(json!({"name": "Harbour contracts", "description": "batch 3"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let Some(browser) = Browser::start("packets", &frame).await else {
        return;
    };

    browser.goto("/packets").await;
    browser.enter_frame("iframe#shard-frame").await;
    browser.wait("#packet-list .packet-row").await;
    assert_eq!(
        browser.text("#packet-list .packet-row .packet-name").await,
        "Harbour contracts"
    );
    assert_eq!(
        browser
            .text("#packet-list .packet-row .packet-status")
            .await,
        "draft"
    );
    browser
        .until("the All tab is active", async || {
            browser.exists("a.tab[data-status=all].active").await
        })
        .await;
    browser.leave_frame().await;
    browser.screenshot("packets-list").await;

    // Create a draft through the form.
    browser.enter_frame("iframe#shard-frame").await;
    browser
        .type_into("form#create-packet input[name=name]", "Made in the browser")
        .await;
    browser
        .type_into(
            "form#create-packet textarea[name=description]",
            "create, add, finalize, share",
        )
        .await;
    browser
        .click("form#create-packet button[type=submit]")
        .await;
    // Open it: the page may open the new draft by itself; otherwise its row does.
    let opened = async || {
        browser
            .js(
                "const d = document.querySelector('#packet-detail');\
                 return !!(d && d.dataset.id && d.offsetParent !== null);",
                vec![],
            )
            .await
            == json!(true)
    };
    browser
        .until("the new draft is open or listed", async || {
            opened().await
                || browser
                    .js(
                        "return [...document.querySelectorAll('.packet-row .packet-name')]\
                           .some((e) => e.textContent.trim() === 'Made in the browser');",
                        vec![],
                    )
                    .await
                    == json!(true)
        })
        .await;
    if !opened().await {
        let row = browser
            .js(
                "const row = [...document.querySelectorAll('.packet-row')].find((r) => \
                   r.querySelector('.packet-name').textContent.trim() === 'Made in the browser');\
                 return row.dataset.id;",
                vec![],
            )
            .await;
        let id = row.as_str().unwrap();
        browser
            .click(&format!(".packet-row[data-id=\"{id}\"] .packet-name"))
            .await;
        browser
            .until("the draft opens", async || opened().await)
            .await;
    }
    let detail = browser.wait("#packet-detail[data-id]").await;
    let id = detail.attr("data-id").await.unwrap().unwrap();
    assert_eq!(
        detail.attr("data-status").await.unwrap().as_deref(),
        Some("draft")
    );
    browser.leave_frame().await;
    // The page told the frame where it is: the address bar follows.
    browser
        .until("the URL names the packet", async || {
            browser.path().await == format!("/packets/{id}")
        })
        .await;

    // Add an item.
    browser.enter_frame("iframe#shard-frame").await;
    let add = "form#add-content";
    browser
        .wait(&format!("{add} select[name=content_type]"))
        .await
        .select_by_value("document")
        .await
        .unwrap();
    // The contract names the title field `title`; the page names it as the API does.
    browser
        .type_into(
            &format!("{add} input[name=title], {add} input[name=content_title]"),
            "Bill of lading",
        )
        .await;
    browser
        .type_into(&format!("{add} input[name=content_id]"), "doc-42")
        .await;
    browser.click(&format!("{add} button[type=submit]")).await;
    browser
        .until("the item is listed", async || {
            browser
                .texts("#contents .content-row")
                .await
                .iter()
                .any(|row| row.contains("Bill of lading"))
        })
        .await;
    browser.leave_frame().await;
    browser.screenshot("packet-detail").await;

    // Finalize.
    browser.enter_frame("iframe#shard-frame").await;
    browser.click("button#finalize").await;
    browser
        .until("the packet is finalized", async || {
            browser
                .exists(&format!(
                    "#packet-detail[data-id=\"{id}\"][data-status=finalized]"
                ))
                .await
        })
        .await;
    assert!(
        !browser.exists("form#add-content:not([hidden])").await,
        "a finalized packet takes no items"
    );

    // Share: a link appears.
    browser.wait("form#share:not([hidden])").await;
    let shared_with = "form#share input[name=shared_with]";
    if browser.exists(shared_with).await {
        browser.type_into(shared_with, "reviewer").await;
    }
    browser.click("form#share button[type=submit]").await;
    browser
        .until("the share link is shown", async || {
            browser.exists("#share-link:not([hidden]) a[href]").await
        })
        .await;
    let href = browser
        .wait("#share-link a[href]")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let shown = browser.text("#share-link").await;
    let token = href
        .rsplit('/')
        .next()
        .unwrap()
        .split(['?', '#'])
        .next()
        .unwrap()
        .to_string();
    assert!(
        href.contains(&format!("/api/packets/shared/{token}")),
        "{href}"
    );
    assert_eq!(token.len(), 64, "{href}");
    // The full URL, to copy, as text.
    assert!(
        shown.contains(&format!("{}/api/packets/shared/{token}", frame.base)),
        "{shown}"
    );
    browser
        .until("the share is listed", async || {
            browser.exists("#shares .share-row").await
        })
        .await;
    browser.leave_frame().await;
    browser.screenshot("packet-shared").await;

    // The API agrees with what the page showed.
    let (status, packet) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!(status, 200, "{packet}");
    assert_eq!(packet["name"], "Made in the browser");
    assert_eq!(packet["description"], "create, add, finalize, share");
    assert_eq!(packet["status"], "shared", "{packet}");
    let (status, contents) = frame
        .call("GET", &format!("/api/packets/{id}/contents"), None)
        .await;
    assert_eq!(status, 200);
    let items = contents["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{contents}");
    assert_eq!(items[0]["content_type"], "document");
    assert_eq!(items[0]["content_id"], "doc-42");
    assert_eq!(items[0]["content_title"], "Bill of lading");
    let (status, shared) = frame
        .call("GET", &format!("/api/packets/shared/{token}"), None)
        .await;
    assert_eq!(status, 200, "{shared}");
    assert_eq!(shared["packet"]["id"], id.as_str());
    assert_eq!(shared["read_only"], true);
    browser.close().await;
}
