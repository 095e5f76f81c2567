//! The WebhookService rules over Connect JSON and binary proto, each error code included.

use std::time::Duration;

use buffa::Message as _;
use serde_json::{Value, json};
use webhookd::proto::buf::alpha::registry::v1alpha1 as pb;

use crate::helpers::{
    EVENT_PATH, TestApp, assert_error, eventually, serve_command, spawn_app, spawn_app_with,
    wait_until,
};

/// RFC 3339 in UTC with a `Z`, as canonical ProtoJSON writes timestamps.
fn assert_canonical_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    assert!(text.ends_with('Z'), "{text}");
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
}

#[tokio::test]
async fn the_bsr_docs_curl_bodies_create_list_and_delete_a_webhook() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    // The request bodies of the BSR documentation, verbatim but for the placeholders.
    let create = r#"{
    "owner_name": "acme",
    "repository_name": "petapis",
    "webhook_event": "WEBHOOK_EVENT_REPOSITORY_PUSH",
    "callback_url": "https://your.callback.url/buf.alpha.webhook.v1alpha1.EventService/Event"
}"#;
    let (status, created) = app.json("CreateWebhook", Some(&token), create).await;
    assert_eq!(status, 200, "{created}");
    let webhook = &created["webhook"];
    assert_eq!(webhook["event"], "WEBHOOK_EVENT_REPOSITORY_PUSH");
    assert_eq!(webhook["ownerName"], "acme");
    assert_eq!(webhook["repositoryName"], "petapis");
    assert_eq!(
        webhook["callbackUrl"],
        "https://your.callback.url/buf.alpha.webhook.v1alpha1.EventService/Event"
    );
    let id = webhook["webhookId"].as_str().unwrap().to_owned();
    uuid::Uuid::parse_str(&id).expect("webhookId is a UUID");
    assert_canonical_timestamp(&webhook["createTime"]);
    assert_eq!(webhook["createTime"], webhook["updateTime"]);
    let keys: Vec<&str> = webhook
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        keys.iter().all(|k| !k.contains('_')),
        "ProtoJSON output is camelCase: {keys:?}"
    );

    let list = r#"{
    "owner_name": "acme",
    "repository_name": "petapis"
}"#;
    let (status, listed) = app.json("ListWebhooks", Some(&token), list).await;
    assert_eq!(status, 200);
    assert_eq!(listed["webhooks"], json!([webhook]));
    assert!(
        listed.get("nextPageToken").is_none(),
        "no more pages: {listed}"
    );

    let delete = format!("{{\n    \"webhook_id\": \"{id}\"\n}}");
    let (status, deleted) = app.json("DeleteWebhook", Some(&token), &delete).await;
    assert_eq!((status, deleted), (200, json!({})));
    let (status, again) = app.json("DeleteWebhook", Some(&token), &delete).await;
    assert_error(status, &again, 404, "not_found", "no such webhook");
    assert_eq!(app.list(&token, "acme", "petapis", "").await, json!({}));
}

#[tokio::test]
async fn camel_case_and_numeric_enum_input_is_accepted() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let body = json!({"webhookEvent": 1, "ownerName": "acme", "repositoryName": "petapis",
                      "callbackUrl": app.callback("camel"), "someFutureField": true});
    let (status, created) = app
        .json("CreateWebhook", Some(&token), &body.to_string())
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["webhook"]["event"], "WEBHOOK_EVENT_REPOSITORY_PUSH");
}

#[tokio::test]
async fn create_rejects_an_unspecified_or_unknown_event() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    for event in [
        json!("WEBHOOK_EVENT_UNSPECIFIED"),
        json!(0),
        json!(7),
        Value::Null,
    ] {
        let mut body = json!({"ownerName": "acme", "repositoryName": "petapis", "callbackUrl": app.callback("e")});
        if !event.is_null() {
            body["webhookEvent"] = event.clone();
        }
        let (status, answer) = app
            .json("CreateWebhook", Some(&token), &body.to_string())
            .await;
        assert_error(status, &answer, 400, "invalid_argument", "webhook_event");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("WEBHOOK_EVENT_REPOSITORY_PUSH"),
            "{event}: {answer}"
        );
    }
    assert_eq!(app.webhook_count().await, 0);
}

#[tokio::test]
async fn create_and_list_enforce_the_naming_rule() {
    let app = spawn_app().await;
    let token = app.token(&["*"]).await;
    let long = "a".repeat(101);
    let cases = [
        ("", "petapis", "owner_name is required"),
        ("acme", "", "repository_name is required"),
        (long.as_str(), "petapis", "owner_name is 101 bytes long"),
        ("acme", long.as_str(), "repository_name is 101 bytes long"),
        ("Acme", "petapis", "owner_name may contain only"),
        (
            "acme",
            "pet'; DROP TABLE webhooks; --",
            "repository_name may contain only",
        ),
        ("acme", "pet\u{0}apis", "repository_name may contain only"),
        ("-acme", "petapis", "owner_name must start and end"),
    ];
    for (owner, repository, fragment) in cases {
        let create = json!({"webhookEvent": 1, "ownerName": owner, "repositoryName": repository,
                            "callbackUrl": app.callback("n")});
        let (status, answer) = app
            .json("CreateWebhook", Some(&token), &create.to_string())
            .await;
        assert_error(status, &answer, 400, "invalid_argument", fragment);
        let list = json!({"ownerName": owner, "repositoryName": repository});
        let (status, answer) = app
            .json("ListWebhooks", Some(&token), &list.to_string())
            .await;
        assert_error(status, &answer, 400, "invalid_argument", fragment);
    }
    assert_eq!(app.webhook_count().await, 0);
}

#[tokio::test]
async fn create_validates_the_callback_url() {
    let app = spawn_app_with(&[]).await;
    let token = app.token(&["acme"]).await;
    let cases = [
        (
            format!("http://hooks.example.com{EVENT_PATH}"),
            "callback_url must use https (start the server with --allow-insecure-callbacks to allow http)",
        ),
        (
            format!("https://127.0.0.1:9000{EVENT_PATH}"),
            "loopback or private",
        ),
        (
            format!("https://192.168.0.10{EVENT_PATH}"),
            "loopback or private",
        ),
        (
            format!("https://hooks.example.com{EVENT_PATH}?a=b"),
            "query",
        ),
        (
            format!("https://hooks.example.com{EVENT_PATH}#frag"),
            "fragment",
        ),
        (
            format!("https://user:pw@hooks.example.com{EVENT_PATH}"),
            "user name or password",
        ),
        (
            "https://hooks.example.com/webhook".to_owned(),
            "path must end with /buf.alpha.webhook.v1alpha1.EventService/Event",
        ),
        (
            format!("https://hooks.example.com{EVENT_PATH}/extra"),
            "path must end with",
        ),
        (format!("hooks.example.com{EVENT_PATH}"), "absolute URL"),
        (
            format!("https://hooks.example.com/{}{EVENT_PATH}", "a".repeat(2048)),
            "the limit is 2048",
        ),
        (String::new(), "callback_url is required"),
    ];
    for (url, fragment) in cases {
        let (status, answer) = app.try_create(&token, "acme", "petapis", &url).await;
        assert_error(status, &answer, 400, "invalid_argument", fragment);
    }
    assert_eq!(app.webhook_count().await, 0);
    // The same server accepts a public https listener.
    app.create(&token, "acme", "petapis", &app.callback("public"))
        .await;
}

#[tokio::test]
async fn creating_the_same_subscription_twice_is_already_exists() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    app.create(&token, "acme", "petapis", &app.callback("dup"))
        .await;
    let (status, answer) = app
        .try_create(&token, "acme", "petapis", &app.callback("dup"))
        .await;
    assert_error(
        status,
        &answer,
        409,
        "already_exists",
        "acme/petapis already has a webhook",
    );
    assert_eq!(app.webhook_count().await, 1);
    // Another repository or URL is a different subscription.
    app.create(&token, "acme", "other", &app.callback("dup"))
        .await;
    app.create(&token, "acme", "petapis", &app.callback("dup2"))
        .await;
}

#[tokio::test]
async fn the_per_repository_cap_gives_resource_exhausted_and_frees_up_on_delete() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--max-webhooks-per-repository",
        "3",
    ])
    .await;
    let token = app.token(&["acme"]).await;
    let mut ids = vec![];
    for i in 0..3 {
        ids.push(
            app.create(&token, "acme", "petapis", &app.callback(&format!("c{i}")))
                .await["webhookId"]
                .clone(),
        );
    }
    at_cap(&app, &token, "petapis", "--max-webhooks-per-repository").await;
    app.create(&token, "acme", "elsewhere", &app.callback("c3"))
        .await;
    assert_eq!(app.delete(&token, ids[0].as_str().unwrap()).await, 200);
    app.create(&token, "acme", "petapis", &app.callback("c3"))
        .await;
}

/// Checks that acme, holding 3 webhooks, may create none in `repository` (the error says
/// `fragment`), and that nothing was written.
async fn at_cap(app: &TestApp, token: &str, repository: &str, fragment: &str) {
    let (status, answer) = app
        .try_create(token, "acme", repository, &app.callback("one-too-many"))
        .await;
    assert_error(status, &answer, 429, "resource_exhausted", fragment);
    assert_eq!(app.webhook_count().await, 3);
}

#[tokio::test]
async fn the_per_owner_cap_counts_every_repository_and_spares_other_owners() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--max-webhooks-per-owner",
        "3",
    ])
    .await;
    let token = app.token(&["acme", "globex"]).await;
    let mut ids = vec![];
    for repository in ["one", "two", "two"] {
        let callback = app.callback(&format!("{repository}{}", ids.len()));
        ids.push(app.create(&token, "acme", repository, &callback).await["webhookId"].clone());
    }
    let message = "acme already has 3 webhooks; 3 is the most allowed (--max-webhooks-per-owner)";
    at_cap(&app, &token, "three", message).await;
    // In a repository that has webhooks too.
    at_cap(&app, &token, "one", message).await;
    app.create(&token, "globex", "three", &app.callback("c3"))
        .await;
    assert_eq!(app.delete(&token, ids[1].as_str().unwrap()).await, 200);
    app.create(&token, "acme", "three", &app.callback("c3"))
        .await;
}

#[tokio::test]
async fn concurrent_creates_never_exceed_the_cap_and_a_duplicate_at_the_cap_is_already_exists() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--max-webhooks-per-repository",
        "3",
    ])
    .await;
    let token = app.token(&["acme"]).await;
    let creates = (0..12).map(|i| {
        let (app, token) = (&app, &token);
        async move {
            app.try_create(token, "acme", "petapis", &app.callback(&format!("r{i}")))
                .await
        }
    });
    let answers = futures_util::future::join_all(creates).await;
    let created = answers.iter().filter(|(status, _)| *status == 200).count();
    let refused = answers
        .iter()
        .filter(|(status, a)| *status == 429 && a["code"] == "resource_exhausted")
        .count();
    assert_eq!((created, refused), (3, 9), "{answers:?}");
    assert_eq!(app.webhook_count().await, 3);

    let kept = answers
        .iter()
        .find(|(status, _)| *status == 200)
        .map(|(_, a)| a["webhook"]["callbackUrl"].as_str().unwrap().to_owned())
        .unwrap();
    let (status, answer) = app.try_create(&token, "acme", "petapis", &kept).await;
    assert_error(status, &answer, 409, "already_exists", "acme/petapis");
    assert_eq!(app.webhook_count().await, 3);
}

#[tokio::test]
async fn every_rpc_requires_a_valid_bearer_token() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let revoked = app.token(&["acme"]).await;
    sqlx::query("UPDATE api_tokens SET revoke_time = now() WHERE owners = '{acme}' AND revoke_time IS NULL AND create_time = (SELECT max(create_time) FROM api_tokens)")
        .execute(&app.pool)
        .await
        .unwrap();
    let webhook = app
        .create(&token, "acme", "petapis", &app.callback("auth"))
        .await;
    let bodies = [
        (
            "CreateWebhook",
            json!({"webhookEvent": 1, "ownerName": "acme", "repositoryName": "petapis", "callbackUrl": app.callback("x")}),
        ),
        (
            "ListWebhooks",
            json!({"ownerName": "acme", "repositoryName": "petapis"}),
        ),
        ("DeleteWebhook", json!({"webhookId": webhook["webhookId"]})),
    ];
    for (method, body) in &bodies {
        for bad in [None, Some("not-a-token"), Some(revoked.as_str())] {
            let (status, answer) = app.json(method, bad, &body.to_string()).await;
            assert_eq!(
                (status, answer["code"].as_str()),
                (401, Some("unauthenticated")),
                "{method} {bad:?}: {answer}"
            );
        }
    }
    assert_eq!(app.webhook_count().await, 1);
}

#[tokio::test]
async fn malformed_and_unknown_tokens_are_refused_without_asking_the_database_again() {
    let app = spawn_app_with(&["--no-dispatch"]).await;
    let relay = crate::delivery_loop::Relay::start(&app).await;
    let (_serve, port) = serve_command(&app, &relay.database_url(&app), &["--no-dispatch"]);
    let base = format!("http://127.0.0.1:{port}");
    let list = json!({"ownerName": "acme", "repositoryName": "petapis"}).to_string();
    let call = |token: String| {
        let url = format!("{base}/buf.alpha.registry.v1alpha1.WebhookService/ListWebhooks");
        let body = list.clone();
        async move {
            let response = crate::helpers::http_client()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            (status, answer)
        }
    };
    crate::helpers::wait_for_port(port).await;
    let unknown = webhookd::domain::ApiToken::generate().expose().to_owned();
    let (status, answer) = call(unknown.clone()).await;
    assert_error(
        status,
        &answer,
        401,
        "unauthenticated",
        "unknown or revoked",
    );

    // With the database out of reach, both are still refused as unauthenticated (not
    // unavailable): a malformed token is never looked up, an unknown one not twice.
    relay.cut();
    let body = &unknown[4..];
    for token in [
        "x".to_owned(),
        format!("whd_{}", &body[1..]),
        format!("whd_{}!", &body[1..]),
    ] {
        let (status, answer) = call(token).await;
        assert_error(status, &answer, 401, "unauthenticated", "malformed");
    }
    let (status, answer) = call(unknown).await;
    assert_error(
        status,
        &answer,
        401,
        "unauthenticated",
        "unknown or revoked",
    );
    // A token it has not seen must be looked up: the database is unavailable.
    let fresh = webhookd::domain::ApiToken::generate().expose().to_owned();
    let (status, answer) = call(fresh).await;
    assert_error(status, &answer, 503, "unavailable", "database");
}

/// An app, an acme token its cache is shown to hold, and a ListWebhooks request.
async fn cached_token() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let list = json!({"ownerName": "acme", "repositoryName": "petapis"}).to_string();
    app.token_cached(&token).await;
    (app, token, list)
}

#[tokio::test]
async fn a_revoked_token_is_refused_within_moments_even_after_it_was_cached() {
    let (app, token, list) = cached_token().await;
    let id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM api_tokens ORDER BY create_time DESC LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();

    // Revoked the way `webhookd token revoke` does it, from another process: its NOTIFY
    // reaches this one's cache within milliseconds of the commit (not before the next
    // request can, as this test once asserted: under a loaded suite it lost that race).
    let mut conn = app.pool.acquire().await.unwrap();
    assert!(
        webhookd::store::tokens::revoke(&mut conn, id)
            .await
            .unwrap()
    );
    eventually("the revoked token is refused", || async {
        app.json("ListWebhooks", Some(&token), &list).await.0 == 401
    })
    .await;
    let (status, answer) = app.json("ListWebhooks", Some(&token), &list).await;
    assert_error(status, &answer, 401, "unauthenticated", "revoked");
}

#[tokio::test]
async fn a_lost_revocation_listener_empties_the_token_cache() {
    let (app, token, list) = cached_token().await;
    let listener = app.cache_listeners(1).await[0];

    // Kill the LISTEN connection, then revoke behind webhookd's back (no NOTIFY): the
    // cached entry must not outlive the connection that would have announced it.
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(listener)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(killed);
    sqlx::query("UPDATE api_tokens SET revoke_time = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    // Unless the cache was emptied when its connection went, it would serve the token
    // (cached, for --token-cache-ttl, 60 s). It reconnects a second later, and listens
    // again: the token stays refused.
    wait_until(
        "the revoked token is refused",
        std::time::Duration::from_secs(5),
        || async { app.json("ListWebhooks", Some(&token), &list).await.0 == 401 },
    )
    .await;
    app.listening(webhookd::store::tokens::REVOKED_CHANNEL, 1, &[listener])
        .await;
    let (status, answer) = app.json("ListWebhooks", Some(&token), &list).await;
    assert_error(status, &answer, 401, "unauthenticated", "revoked");
}

#[tokio::test]
async fn every_process_lists_what_another_created_or_deleted() {
    let a = spawn_app().await;
    let b = a.another_process().await;
    let token = a.token(&["acme"]).await;
    // Both caches are shown to be in use (on another repository's page), so that what
    // follows cannot pass by reading the database.
    a.create(&token, "acme", "other", &a.callback("o")).await;
    a.list_cached(&token, "acme", "other").await;
    b.list_cached(&token, "acme", "other").await;
    let count = |v: &Value| v["webhooks"].as_array().map_or(0, Vec::len);
    // b remembers an empty first page; a creates; b must list the new webhook soon (its
    // cache would otherwise serve the empty page for --list-cache-ttl, 60 s).
    assert_eq!(count(&a.list(&token, "acme", "petapis", "").await), 0);
    assert_eq!(count(&b.list(&token, "acme", "petapis", "").await), 0);
    let created = a.create(&token, "acme", "petapis", &a.callback("x")).await;
    assert_eq!(
        count(&a.list(&token, "acme", "petapis", "").await),
        1,
        "a at once"
    );
    eventually("b lists the new webhook", || async {
        count(&b.list(&token, "acme", "petapis", "").await) == 1
    })
    .await;

    let (status, _) = b
        .json(
            "DeleteWebhook",
            Some(&token),
            &json!({"webhookId": created["webhookId"]}).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        count(&b.list(&token, "acme", "petapis", "").await),
        0,
        "b at once"
    );
    eventually("a lists it gone", || async {
        count(&a.list(&token, "acme", "petapis", "").await) == 0
    })
    .await;
}

#[tokio::test]
async fn a_token_manages_only_the_owners_it_names() {
    let app = spawn_app().await;
    let acme = app.token(&["acme"]).await;
    let both = app.token(&["acme", "globex"]).await;
    let admin = app.token(&["*"]).await;
    let theirs = app
        .create(&both, "globex", "petapis", &app.callback("g"))
        .await;

    let (status, answer) = app
        .try_create(&acme, "globex", "petapis", &app.callback("x"))
        .await;
    assert_error(status, &answer, 403, "permission_denied", "\"globex\"");
    let list = json!({"ownerName": "globex", "repositoryName": "petapis"});
    let (status, answer) = app
        .json("ListWebhooks", Some(&acme), &list.to_string())
        .await;
    assert_error(status, &answer, 403, "permission_denied", "\"globex\"");
    // Deleting another owner's webhook looks exactly like deleting one that does not exist.
    let delete = json!({"webhookId": theirs["webhookId"]}).to_string();
    let (status, foreign) = app.json("DeleteWebhook", Some(&acme), &delete).await;
    let (_, unknown) = app
        .json(
            "DeleteWebhook",
            Some(&acme),
            &json!({"webhookId": uuid::Uuid::new_v4().to_string()}).to_string(),
        )
        .await;
    assert_eq!((status, &foreign), (404, &unknown));
    assert_eq!(
        app.list(&admin, "globex", "petapis", "").await["webhooks"][0],
        theirs
    );
    let (status, _) = app.json("DeleteWebhook", Some(&admin), &delete).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn delete_of_a_malformed_or_unknown_id_is_not_found() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    for id in [
        json!("wh-1"),
        json!(""),
        json!(uuid::Uuid::new_v4().to_string()),
        json!("'; DELETE FROM webhooks; --"),
    ] {
        let (status, answer) = app
            .json(
                "DeleteWebhook",
                Some(&token),
                &json!({"webhookId": id}).to_string(),
            )
            .await;
        assert_error(status, &answer, 404, "not_found", "no such webhook");
    }
}

#[tokio::test]
async fn list_pages_through_250_webhooks_without_gaps_or_duplicates() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--max-webhooks-per-repository",
        "300",
    ])
    .await;
    let token = app.token(&["acme"]).await;
    let mut created = std::collections::BTreeSet::new();
    for i in 0..250 {
        let webhook = app
            .create(&token, "acme", "petapis", &app.callback(&format!("p{i}")))
            .await;
        created.insert(webhook["webhookId"].as_str().unwrap().to_owned());
    }
    app.create(&token, "acme", "other", &app.callback("noise"))
        .await;
    let (mut seen, mut sizes, mut page_token, mut order) = (vec![], vec![], String::new(), vec![]);
    loop {
        let page = app.list(&token, "acme", "petapis", &page_token).await;
        let webhooks = page["webhooks"].as_array().unwrap();
        sizes.push(webhooks.len());
        for w in webhooks {
            seen.push(w["webhookId"].as_str().unwrap().to_owned());
            order.push((
                w["createTime"].as_str().unwrap().to_owned(),
                w["webhookId"].as_str().unwrap().to_owned(),
            ));
        }
        match page["nextPageToken"].as_str() {
            Some(next) => page_token = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(seen.len(), 250, "no duplicates");
    assert_eq!(
        seen.iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        created,
        "no gaps"
    );
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        order.iter().map(|(t, _)| t.parse().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "ordered by create_time"
    );
}

#[tokio::test]
async fn forged_or_foreign_page_tokens_are_invalid_argument() {
    let app = spawn_app_with(&[
        "--allow-insecure-callbacks",
        "--max-webhooks-per-repository",
        "300",
    ])
    .await;
    let token = app.token(&["acme"]).await;
    for i in 0..101 {
        app.create(&token, "acme", "petapis", &app.callback(&format!("f{i}")))
            .await;
    }
    let next = app.list(&token, "acme", "petapis", "").await["nextPageToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tampered = next.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (repository, page_token) in [
        ("petapis", "bm90LWEtdG9rZW4"),
        ("petapis", "%%%"),
        ("petapis", tampered.as_str()),
        ("other", next.as_str()),
    ] {
        let body =
            json!({"ownerName": "acme", "repositoryName": repository, "pageToken": page_token});
        let (status, answer) = app
            .json("ListWebhooks", Some(&token), &body.to_string())
            .await;
        assert_error(
            status,
            &answer,
            400,
            "invalid_argument",
            "page_token is not valid",
        );
    }
    assert_eq!(
        app.list(&token, "acme", "petapis", &next).await["webhooks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// The bytes buf 1.75.0 sends (wire contract, section 1.4).
const CREATE_BYTES_URL: &str = "https://cb.example/buf.alpha.webhook.v1alpha1.EventService/Event";

fn buf_create_bytes() -> Vec<u8> {
    let mut bytes = vec![0x08, 0x01, 0x12, 0x04];
    bytes.extend_from_slice(b"acme");
    bytes.extend_from_slice(&[0x1a, 0x07]);
    bytes.extend_from_slice(b"petapis");
    bytes.extend_from_slice(&[0x22, 0x40]);
    bytes.extend_from_slice(CREATE_BYTES_URL.as_bytes());
    bytes
}

#[test]
fn generated_messages_encode_to_the_bsr_wire_bytes() {
    let create = pb::CreateWebhookRequest {
        webhook_event: buffa::EnumValue::from(1),
        owner_name: "acme".into(),
        repository_name: "petapis".into(),
        callback_url: CREATE_BYTES_URL.into(),
        ..Default::default()
    };
    assert_eq!(create.encode_to_vec(), buf_create_bytes());
    let list = pb::ListWebhooksRequest {
        owner_name: "acme".into(),
        repository_name: "petapis".into(),
        ..Default::default()
    };
    assert_eq!(
        list.encode_to_vec(),
        [&[0x0a, 0x07][..], b"petapis", &[0x12, 0x04], b"acme"].concat()
    );
    let delete = pb::DeleteWebhookRequest {
        webhook_id: "wh-1".into(),
        ..Default::default()
    };
    assert_eq!(
        delete.encode_to_vec(),
        [&[0x0a, 0x04][..], b"wh-1"].concat()
    );
}

#[tokio::test]
async fn binary_proto_requests_with_the_buf_cli_bytes_round_trip() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let (status, headers, body) = app
        .call(
            "CreateWebhook",
            Some(&token),
            "application/proto",
            buf_create_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/proto");
    let created = pb::CreateWebhookResponse::decode_from_slice(&body).unwrap();
    let webhook = created.webhook.as_option().unwrap().clone();
    assert_eq!(webhook.event.to_i32(), 1);
    assert_eq!(
        (
            webhook.owner_name.as_str(),
            webhook.repository_name.as_str()
        ),
        ("acme", "petapis")
    );
    assert_eq!(webhook.callback_url, CREATE_BYTES_URL);
    assert_eq!(webhook.create_time, webhook.update_time);
    // Field by field, the response is exactly what the BSR's Webhook encodes to.
    let mut expected = vec![0x08, 0x01, 0x12, 0x24];
    let varint = |n: usize| {
        if n < 128 {
            vec![n as u8]
        } else {
            vec![(n as u8) | 0x80, (n >> 7) as u8]
        }
    };
    expected.extend_from_slice(webhook.webhook_id.as_bytes());
    let ts = webhook.create_time.as_option().unwrap().encode_to_vec();
    for tag in [0x1a, 0x22] {
        expected.extend_from_slice(&[tag, u8::try_from(ts.len()).unwrap()]);
        expected.extend_from_slice(&ts);
    }
    expected.extend_from_slice(
        &[
            &[0x2a, 0x07][..],
            b"petapis",
            &[0x32, 0x04],
            b"acme",
            &[0x3a, 0x40],
            CREATE_BYTES_URL.as_bytes(),
        ]
        .concat(),
    );
    assert_eq!(
        body,
        [&[0x0a][..], &varint(expected.len()), &expected].concat()
    );

    let list = [&[0x0a, 0x07][..], b"petapis", &[0x12, 0x04], b"acme"].concat();
    let (status, _, body) = app
        .call("ListWebhooks", Some(&token), "application/proto", list)
        .await;
    assert_eq!(status, 200);
    let listed = pb::ListWebhooksResponse::decode_from_slice(&body).unwrap();
    assert_eq!(listed.webhooks, vec![webhook.clone()]);
    let delete = [&[0x0a, 0x24][..], webhook.webhook_id.as_bytes()].concat();
    let (status, _, body) = app
        .call("DeleteWebhook", Some(&token), "application/proto", delete)
        .await;
    assert_eq!((status, body.len()), (200, 0));
}

#[tokio::test]
async fn a_database_that_refuses_connections_gives_unavailable_and_a_broken_schema_internal() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    // A broken schema: the error is logged, the caller gets an opaque `internal`.
    sqlx::query("ALTER TABLE webhooks RENAME COLUMN callback_url TO gone")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, answer) = app
        .try_create(&token, "acme", "petapis", &app.callback("db"))
        .await;
    assert_error(status, &answer, 500, "internal", "internal error");
    assert!(
        !answer["message"].as_str().unwrap().contains("gone"),
        "no internals leak: {answer}"
    );
    // A database that accepts no connections: `unavailable`, retryable.
    let database = app.db_options.get_database().unwrap().to_owned();
    let mut admin: sqlx::PgConnection =
        sqlx::Connection::connect_with(&app.db_options.clone().database("postgres"))
            .await
            .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&database)
        .execute(&mut admin)
        .await
        .unwrap();
    let (status, answer) = app
        .json(
            "ListWebhooks",
            Some(&token),
            &json!({"ownerName": "acme", "repositoryName": "petapis"}).to_string(),
        )
        .await;
    assert_error(status, &answer, 503, "unavailable", "retry later");
    let readyz = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
}

#[tokio::test]
async fn a_flood_of_unknown_tokens_holds_at_most_four_of_the_pools_connections() {
    let app = spawn_app_with(&["--no-dispatch"]).await;
    let relay = crate::delivery_loop::Relay::start(&app).await;
    let flags = ["--no-dispatch", "--max-db-connections", "16"];
    let (_serve, port) = serve_command(&app, &relay.database_url(&app), &flags);
    crate::helpers::wait_for_port(port).await;
    let url =
        format!("http://127.0.0.1:{port}/buf.alpha.registry.v1alpha1.WebhookService/ListWebhooks");
    let call = move |token: String| {
        let url = url.clone();
        async move {
            crate::helpers::http_client()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(r#"{"ownerName":"acme","repositoryName":"petapis"}"#)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let random = || webhookd::domain::ApiToken::generate().expose().to_owned();
    assert_eq!(call(random()).await, 401);
    // The database goes quiet, so every lookup that reaches it holds its connection: 64
    // concurrent requests, each with a well-formed token never seen before.
    relay.stall();
    let before = relay.attempts();
    let flood: Vec<_> = (0..64).map(|_| tokio::spawn(call(random()))).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let opened = relay.attempts() - before;
    relay.restore();
    for request in flood {
        assert_eq!(request.await.unwrap(), 401);
    }
    // Without the limit the pool grows to its 16 connections for the flood.
    assert!(opened <= 4, "{opened} connections opened for a token flood");
}
