//! The sidebar built from several shards' manifests: categories, order, labels, icons,
//! sub-routes, a label that is markup, live badges, and deep links with the back button.

use super::Browser;
use crate::harness::{Frame, arkham, cpu_heavy, data_dir, install, manifest_of, package_with};
use serde_json::{Value, json};
use test_shards::{ECHO, PACKETS};

/// Installs the echo fixture as `name`, with `navigation` (TOML of the `[navigation]` table).
fn install_echo_as(data: &std::path::Path, name: &str, navigation: &str) {
    let mut manifest = manifest_of(&ECHO);
    manifest.name = name.to_string();
    manifest.navigation = Some(toml::from_str(navigation).unwrap());
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join(format!("{name}.shard.wasm"));
    package_with(&ECHO, &manifest, &path);
    let (ok, out, err) = arkham(data, &["shard", "add", path.to_str().unwrap(), "--yes"]);
    assert!(ok, "installing {name}: {out}{err}");
}

/// The sidebar as data: per category section, its name, heading and shards (name, label,
/// icon, href), in page order.
async fn sidebar(browser: &Browser) -> Value {
    browser
        .js(
            r#"
            return [...document.querySelectorAll('#nav section.nav-category')].map((s) => ({
              category: s.dataset.category,
              heading: (s.querySelector('h2') || {}).textContent,
              shards: [...s.querySelectorAll('a.nav-item')].map((a) => ({
                shard: a.dataset.shard,
                label: (a.querySelector('.nav-label') || {}).textContent,
                icon: (a.querySelector('.icon[data-icon]') || { dataset: {} }).dataset.icon,
                href: a.getAttribute('href'),
              })),
            }));
            "#,
            vec![],
        )
        .await
}

/// Categories in the fixed order (System, Data, Search, Analysis, Visualize, Export, whatever
/// order the shards were installed in), shards by `order` within one, their labels and icons,
/// and packets' sub-routes.
#[tokio::test(flavor = "multi_thread")]
async fn navigation_follows_the_manifests() {
    let _heavy = cpu_heavy().await;
    let data = data_dir("");
    // Installed out of order on purpose: the page sorts, not the install.
    install(data.path(), &[&PACKETS]);
    let shards = [
        (
            "exporter",
            "Export",
            10,
            "Exporter",
            "Download",
            "/exporter",
        ),
        ("charts", "Visualize", 3, "Charts", "ChartLine", "/charts"),
        ("streams", "Data", 20, "Streams", "Activity", "/streams"),
        ("tables", "Data", 5, "Tables", "Table", "/tables"),
        ("finder", "Search", 1, "Finder", "Search", "/finder"),
        ("probe", "Analysis", 7, "Probe", "Microscope", "/probe"),
        ("console", "System", 0, "Console", "Terminal", "/console"),
    ];
    for (name, category, order, label, icon, route) in shards {
        install_echo_as(
            data.path(),
            name,
            &format!(
                "category = {category:?}\norder = {order}\nlabel = {label:?}\nicon = {icon:?}\nroute = {route:?}\n"
            ),
        );
    }
    let frame = Frame::start(data.path());
    let Some(browser) = Browser::start("navigation", &frame).await else {
        return;
    };
    browser.goto("/").await;
    browser.wait("#nav a.nav-item[data-shard=console]").await;
    browser.wait("#nav a.nav-item[data-shard=packets]").await;

    let nav = sidebar(&browser).await;
    let categories: Vec<&str> = nav
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["category"].as_str().unwrap())
        .collect();
    assert_eq!(
        categories,
        [
            "System",
            "Data",
            "Search",
            "Analysis",
            "Visualize",
            "Export"
        ],
        "{nav:#}"
    );
    for section in nav.as_array().unwrap() {
        assert_eq!(section["heading"], section["category"], "{section}");
    }
    let in_page: Vec<(String, String, String, String)> = nav
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["shards"].as_array().unwrap().clone())
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (field("shard"), field("label"), field("icon"), field("href"))
        })
        .collect();
    let expected: Vec<(String, String, String, String)> = [
        ("console", "Console", "Terminal", "/console"),
        ("tables", "Tables", "Table", "/tables"),
        ("streams", "Streams", "Activity", "/streams"),
        ("finder", "Finder", "Search", "/finder"),
        ("probe", "Probe", "Microscope", "/probe"),
        ("charts", "Charts", "ChartLine", "/charts"),
        ("exporter", "Exporter", "Download", "/exporter"),
        ("packets", "Packets", "Package", "/packets"),
    ]
    .iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
    .collect();
    assert_eq!(in_page, expected, "{nav:#}");

    // The icons are images the frame serves (CSS masks of /static/icons/NAME.svg).
    let masks = browser
        .js(
            "return [...document.querySelectorAll('#nav a.nav-item .icon[data-icon]')]\
               .map((e) => getComputedStyle(e).maskImage || getComputedStyle(e).webkitMaskImage);",
            vec![],
        )
        .await;
    assert_eq!(masks.as_array().unwrap().len(), expected.len(), "{masks}");
    for mask in masks.as_array().unwrap() {
        assert!(
            mask.as_str().unwrap_or_default().contains("/static/icons/"),
            "{masks}"
        );
    }

    // Packets' sub-routes, in manifest order, below it; the drafts one with its badge.
    let subs = browser
        .js(
            "return [...document.querySelectorAll('#nav a.nav-sub[data-shard=packets]')].map((a) => \
               [a.dataset.sub, a.querySelector('.nav-label').textContent, a.getAttribute('href'), \
                !!a.querySelector('.badge[data-endpoint]')]);",
            vec![],
        )
        .await;
    assert_eq!(
        subs,
        json!([
            ["all", "All Packets", "/packets", false],
            ["draft", "Drafts", "/packets/draft", true],
            ["finalized", "Finalized", "/packets/finalized", false],
            ["shared", "Shared", "/packets/shared", false],
        ]),
    );
    let badge = browser
        .wait("#nav a.nav-item[data-shard=packets] .badge")
        .await;
    assert_eq!(
        badge.attr("data-endpoint").await.unwrap().as_deref(),
        Some("/api/packets/count")
    );
    browser
        .until("the packets badge shows 0", async || {
            browser
                .text("#nav a.nav-item[data-shard=packets] .badge")
                .await
                == "0"
        })
        .await;
    browser.screenshot("home").await;

    // A click on a shard without a page of its own opens the generic page, without a reload.
    browser
        .js("window.__sameDocument = true; return null;", vec![])
        .await;
    browser.click("#nav a.nav-item[data-shard=tables]").await;
    browser.wait("#shard-generic[data-shard=tables]").await;
    assert_eq!(browser.path().await, "/tables");
    assert_eq!(browser.text("#page-title").await, "Tables");
    assert!(
        browser
            .text("#shard-generic .field[data-field=description]")
            .await
            .contains(&manifest_of(&ECHO).description)
    );
    assert_eq!(
        browser.js("return window.__sameDocument;", vec![]).await,
        json!(true),
        "the link navigated inside the page"
    );
    assert!(
        browser
            .exists("#nav a.nav-item[data-shard=tables].active")
            .await
    );
    browser.close().await;
}

/// A manifest label that is markup is shown as its text: no element made of it, no script run.
#[tokio::test(flavor = "multi_thread")]
async fn a_label_of_markup_is_text() {
    let _heavy = cpu_heavy().await;
    const LABEL: &str = "<img src=x onerror=alert(1)>";
    let data = data_dir("");
    install_echo_as(
        data.path(),
        "hostile-label",
        &format!(
            "category = \"Data\"\nlabel = {LABEL:?}\nroute = \"/hostile-label\"\nicon = \"<b>x</b>\"\n\
             sub_routes = [{{ id = \"s\", label = {LABEL:?}, route = \"/hostile-label/sub\" }}]\n"
        ),
    );
    let frame = Frame::start(data.path());
    let Some(browser) = Browser::start("xss", &frame).await else {
        return;
    };
    browser.goto("/hostile-label").await;
    let label = browser
        .text("#nav a.nav-item[data-shard=hostile-label] .nav-label")
        .await;
    assert_eq!(label, LABEL);
    assert_eq!(
        browser
            .text("#nav a.nav-sub[data-shard=hostile-label] .nav-label")
            .await,
        LABEL
    );
    // The generic page shows the label as its heading, as text too.
    browser
        .wait("#shard-generic[data-shard=hostile-label]")
        .await;
    assert_eq!(browser.text("#page-title").await, LABEL);
    let images = browser
        .js(
            "return document.querySelectorAll('#nav img, #main img, #page-title *, .nav-label *').length;",
            vec![],
        )
        .await;
    assert_eq!(images, json!(0));
    // Give a would-be `onerror` time to fire (the image `x` would fail at once), then look.
    browser.goto("/").await;
    browser
        .wait("#nav a.nav-item[data-shard=hostile-label] .nav-label")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!browser.alert_open().await, "an alert opened");
    assert_eq!(
        browser
            .js("return document.querySelectorAll('img').length;", vec![])
            .await,
        json!(0)
    );
    browser.screenshot("hostile-label").await;
    browser.close().await;
}

/// The packets badge follows a packet created through the API, without a reload.
#[tokio::test(flavor = "multi_thread")]
async fn a_badge_follows_the_api() {
    let _heavy = cpu_heavy().await;
    let data = data_dir("");
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let Some(browser) = Browser::start("badge", &frame).await else {
        return;
    };
    browser.goto("/").await;
    const BADGE: &str = "#nav a.nav-item[data-shard=packets] .badge";
    const DRAFTS: &str = "#nav a.nav-sub[data-shard=packets][data-sub=draft] .badge";
    browser
        .until("the packets badge shows 0", async || {
            browser.text(BADGE).await == "0"
        })
        .await;
    browser
        .js("window.__sameDocument = true; return null;", vec![])
        .await;

    for name in ["first", "second"] {
        let (status, body) = frame
            .call("POST", "/api/packets/", Some(json!({"name": name})))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    browser
        .until("the packets badge shows 2", async || {
            browser.text(BADGE).await == "2"
        })
        .await;
    browser
        .until("the drafts badge shows 2", async || {
            browser.text(DRAFTS).await == "2"
        })
        .await;
    assert_eq!(
        browser.js("return window.__sameDocument;", vec![]).await,
        json!(true),
        "the page was not reloaded"
    );
    browser.close().await;
}

/// `/packets/draft` opened directly shows packets' page with Drafts active; a click on
/// Finalized and the back button move between the two.
#[tokio::test(flavor = "multi_thread")]
async fn deep_links_and_the_back_button() {
    let _heavy = cpu_heavy().await;
    let data = data_dir("");
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let Some(browser) = Browser::start("deep-link", &frame).await else {
        return;
    };
    const DRAFTS: &str = "#nav a.nav-sub[data-shard=packets][data-sub=draft]";
    const FINALIZED: &str = "#nav a.nav-sub[data-shard=packets][data-sub=finalized]";
    browser.goto("/packets/draft").await;
    let frame_element = browser.wait("iframe#shard-frame").await;
    let src = frame_element.attr("src").await.unwrap().unwrap_or_default();
    assert!(src.starts_with("/api/packets/ui/"), "{src}");
    assert_eq!(
        frame_element.attr("sandbox").await.unwrap().as_deref(),
        Some("allow-scripts allow-forms allow-downloads allow-popups")
    );
    browser
        .until("Drafts is the active link", async || {
            browser.exists(&format!("{DRAFTS}.active")).await
        })
        .await;
    assert!(!browser.exists(&format!("{FINALIZED}.active")).await);
    assert_eq!(browser.path().await, "/packets/draft");

    browser.click(FINALIZED).await;
    browser
        .until("the URL is /packets/finalized", async || {
            browser.path().await == "/packets/finalized"
        })
        .await;
    browser
        .until("Finalized is the active link", async || {
            browser.exists(&format!("{FINALIZED}.active")).await
        })
        .await;
    assert!(!browser.exists(&format!("{DRAFTS}.active")).await);
    assert!(
        browser.exists("iframe#shard-frame").await,
        "packets' page stays"
    );

    browser.client.back().await.unwrap();
    browser
        .until("back at /packets/draft", async || {
            browser.path().await == "/packets/draft"
        })
        .await;
    browser
        .until("Drafts is active again", async || {
            browser.exists(&format!("{DRAFTS}.active")).await
        })
        .await;
    assert!(!browser.exists(&format!("{FINALIZED}.active")).await);
    assert!(browser.exists("iframe#shard-frame").await);

    // The shard's page follows the route it is given (its Drafts tab), when it has tabs.
    browser.enter_frame("iframe#shard-frame").await;
    browser
        .until("the packets page shows its Drafts tab active", async || {
            browser.exists("a.tab[data-status=draft].active").await
        })
        .await;
    browser.leave_frame().await;
    browser.close().await;
}
