//! The web console in a real browser: Debian's Chromium driven by playwright-core
//! (tests/clients/node/console_e2e.mjs) against the real server, which delivers to real
//! listeners. Screenshots of each main page are left in target/console-screenshots.

use serde_json::{Value, json};

use crate::helpers::{run, spawn_app_with};
use crate::receiver::Receiver;

/// A listener that answers every request with HTML, as a hostile or careless one might.
async fn html_listener() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async {
        (
            [("content-type", "text/html"), ("x-listener", "<b>bold</b>")],
            "<script>alert(1)</script><img src=x onerror=alert(2)>",
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn the_console_manages_subscriptions_and_shows_deliveries_in_chromium() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--wake-on-publish",
        "--poll-interval",
        "200ms",
    ])
    .await;
    let token = app.token(&["acme"]).await;
    let receiver = Receiver::start().await;
    let html = html_listener().await;
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut command = std::process::Command::new(crate::github_hooks::node());
    command
        .arg("tests/clients/node/console_e2e.mjs")
        .arg(app.url(""))
        .arg(&token)
        .arg("acme")
        .arg(format!("http://{}/hook", receiver.addr))
        .arg(format!("http://{html}/hook"))
        .arg(&shots);
    let (code, stdout, stderr) = run(command).await;
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("no report ({e}): {stdout}\n{stderr}"));
    assert_eq!(code, 0, "{report:#}\n{stderr}");

    // Served by serve itself, locked down.
    assert_eq!(report["redirected_to"], "/console/");
    let csp = report["csp"].as_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(report["nosniff"], "nosniff");
    // Sign-in: a bad token refused with the API's message; the good one kept out of the
    // URL and cookies.
    assert!(
        report["bad_token_error"]
            .as_str()
            .unwrap()
            .starts_with("unauthenticated"),
        "{report:#}"
    );
    assert_eq!(report["who"], "Token covers acmeSign out");
    assert_eq!(report["token_in_url"], false);
    assert_eq!(report["cookies"], 0);
    // The API's validation message, as the API gives it.
    let refused = report["create_error"].as_str().unwrap();
    assert!(
        refused.starts_with("invalid_argument: ") && refused.contains("url"),
        "{refused}"
    );
    assert!(
        report["flash_after_create"]
            .as_str()
            .unwrap()
            .contains("whsec_")
    );
    assert_eq!(report["created_events"], "artifact.pushed");
    // The ping arrived in the live tail, and its request and response are shown.
    let tail = report["tail_row"].as_str().unwrap();
    assert!(tail.contains("ping") && tail.contains("HTTP 200"), "{tail}");
    assert!(
        report["request_body"].as_str().unwrap().contains("ping"),
        "{report:#}"
    );
    assert!(
        report["request_headers"]
            .as_str()
            .unwrap()
            .contains("webhook-signature"),
        "{report:#}"
    );
    assert_eq!(report["attempts_after_redeliver"], 2);
    // What listeners and users wrote is text, never markup: no alert ever opened.
    assert_eq!(
        report["html_response_body"],
        "<script>alert(1)</script><img src=x onerror=alert(2)>"
    );
    assert_eq!(report["scripts_in_main"], 0);
    assert_eq!(report["markup_name"], "<img src=x onerror=alert(3)>");
    assert_eq!(report["images_in_table"], 0);
    let dialogs: Vec<&str> = report["dialogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        dialogs.iter().all(|d| d.starts_with("confirm: ")),
        "{dialogs:?}"
    );
    // Pause and resume, with the state and reason shown.
    assert_eq!(report["paused_state"], "paused");
    assert!(
        report["paused_reason"]
            .as_str()
            .unwrap()
            .contains("paused in the console")
    );
    assert_eq!(report["resumed_state"], "active");
    assert!(
        report["last_response"].as_str().unwrap().contains("200"),
        "{report:#}"
    );
    assert!(report["chart_bars"].as_u64().unwrap() >= 1, "{report:#}");
    // Edit: the API's message for a bad URL, then only what changed saved (repository
    // cannot change, so it is not offered).
    assert_eq!(report["edit_repository_disabled"], true);
    let refused = report["edit_error"].as_str().unwrap();
    assert!(
        refused.starts_with("invalid_argument: ") && refused.contains("url"),
        "{refused}"
    );
    assert_eq!(report["flash_after_edit"], "Saved.");
    assert_eq!(report["edited_row_name"], "console-hook-renamed");
    assert_eq!(
        report["edited"],
        json!({"name": "console-hook-renamed",
               "eventTypes": ["artifact.pushed", "artifact.deleted"],
               "url": format!("http://{}/hook", receiver.addr)}),
        "{report:#}"
    );
    // The log and its filters: two deliveries (ping, redelivered once), none failed.
    assert_eq!(report["log_rows"], 1, "{report:#}");
    assert_eq!(report["failed_rows"], 0);
    assert_eq!(report["delivered_rows"], 1);
    // A time typed in a "(UTC)" field is UTC, whatever the browser's time zone.
    assert_eq!(report["since_in_hash"], "2020-01-02T03:04:00.000Z");
    assert_eq!(report["since_shown"], "2020-01-02T03:04");
    assert!(
        report["recover_flash"]
            .as_str()
            .unwrap()
            .contains("0 failed deliveries queued again")
    );
    // Bulk delete: both gone, in the API too.
    assert_eq!(report["delete_label"], "Delete selected (2)");
    assert_eq!(report["rows_after_delete"], 0);
    assert_eq!(report["left"], 0);
    assert_eq!(report["token_kept"], 0);
    // A tab reloaded with a token since refused lands on the sign-in form, told why.
    assert!(
        report["refused_flash"]
            .as_str()
            .unwrap()
            .starts_with("Your token was refused"),
        "{report:#}"
    );
    assert_eq!(report["refused_token_kept"], 0);
    assert_eq!(report["csp_violations"], 0, "{report:#}");
    // The only errors: the browser's own notes of the refusals the test asked for (the
    // bad token's 401, the bad URL's 400).
    let errors: Vec<&str> = report["console_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .filter(|e| {
            !e.starts_with("Failed to load resource: the server responded with a status of 40")
        })
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    for page in [
        "signin",
        "subscription-form",
        "tail",
        "delivery",
        "delivery-html-response",
        "subscriptions",
        "deliveries",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "{page}");
    }
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_no_privilege() {
    let app = spawn_app_with(&[]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = http.get(app.url("/")).send().await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/console/");
    for (path, kind) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
    ] {
        let response = http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], kind);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'; script-src 'self'")
        );
        assert!(headers.get("set-cookie").is_none());
    }
    // The page has no inline script or handler for the policy to allow.
    let page = http
        .get(app.url("/console/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<script src="/console/app.js" defer></script>"#));
    assert_eq!(page.matches("<script").count(), 1);
    let handler = regex::Regex::new(r"\son[a-z]+\s*=").unwrap();
    assert!(!handler.is_match(&page), "no inline handlers");
    let script = http
        .get(app.url("/console/app.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!script.contains("innerHTML") && !script.contains("eval("));
    // The console's data comes from the API, which wants a token like any client.
    let status = http
        .post(app.url("/webhookd.v1.SubscriptionService/ListOwners"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
}
