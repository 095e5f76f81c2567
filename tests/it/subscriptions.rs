//! `webhookd.v1.SubscriptionService` over Connect JSON: every RPC, BSR webhooks seen as
//! subscriptions, and every bad input refused with `invalid_argument` naming its field and
//! nothing written.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, spawn_app};

pub const SUBSCRIPTIONS: &str = "webhookd.v1.SubscriptionService";

/// Subscribes `receiver` to test-webhook's registry events as JSON, with `extra` fields (a
/// name, headers, ...); its id.
pub async fn subscribe_json(
    app: &TestApp,
    token: &str,
    receiver: &crate::receiver::Receiver,
    extra: Value,
) -> String {
    let mut subscription = json!({
        "owner": "test-webhook", "family": "EVENT_FAMILY_REGISTRY", "format": "FORMAT_JSON",
        "url": format!("http://{}/hook", receiver.addr),
    });
    let fields = subscription.as_object_mut().unwrap();
    fields.extend(extra.as_object().unwrap().clone());
    create(app, token, subscription).await["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Publishes one registry event of each of `kinds` for `owner`/debian (a digest, tag
/// `latest`); panics unless all are stored.
pub async fn publish_registry(app: &TestApp, token: &str, owner: &str, kinds: &[&str]) {
    let events: Vec<Value> = kinds
        .iter()
        .map(|kind| {
            json!({"registry": {
                "kind": kind, "owner": owner, "repository": "debian",
                "digest": "sha256:8a9e0a4bb3b5bd2a1c4d6b3c6e6e3f6f0e1a2b3c4d5e6f708192a3b4c5d6e7f8",
                "tags": ["latest"],
            }})
        })
        .collect();
    let (status, answer) = app
        .rpc(
            "webhookd.v1.PublishService/Publish",
            token,
            json!({ "events": events }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// Calls `method` of SubscriptionService.
pub async fn call(app: &TestApp, token: &str, method: &str, body: Value) -> (u16, Value) {
    app.rpc(&format!("{SUBSCRIPTIONS}/{method}"), token, body)
        .await
}

/// Creates `subscription`; panics unless it is created. Returns the stored subscription.
pub async fn create(app: &TestApp, token: &str, subscription: Value) -> Value {
    let (status, created) = call(
        app,
        token,
        "CreateSubscription",
        json!({ "subscription": subscription }),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert!(
        created["signingSecret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    created["subscription"].clone()
}

#[tokio::test]
async fn create_get_list_update_pause_resume_and_delete_a_registry_subscription() {
    let app = spawn_app().await;
    let token = app.token(&["library"]).await;
    let created = create(
        &app,
        &token,
        json!({
            "owner": "library",
            "family": "EVENT_FAMILY_REGISTRY",
            "eventTypes": ["artifact.pushed", "scan.completed", "artifact.pushed"],
            "repositoryFilters": ["^prod/"],
            "tagFilters": ["^v[0-9]+"],
            "url": "https://ci.example.com/hook?sig=abc",
            "format": "FORMAT_HARBOR",
            "authHeader": "Bearer s3cret",
            "headers": [{"name": "X-Team", "value": "core"}],
            "name": "ci",
            "description": "Harbor-style deliveries to CI",
        }),
    )
    .await;
    let id = created["subscriptionId"].as_str().unwrap().to_owned();
    assert_eq!(created["owner"], "library");
    assert!(created.get("repository").is_none(), "every repository");
    assert_eq!(
        created["eventTypes"],
        json!(["artifact.pushed", "scan.completed"])
    );
    assert_eq!(created["format"], "FORMAT_HARBOR");
    assert_eq!(created["hasAuthHeader"], true);
    assert!(
        created.get("authHeader").is_none(),
        "never returned: {created}"
    );
    assert_eq!(created["state"], "SUBSCRIPTION_STATE_ACTIVE");
    assert_eq!(created["managedBy"], "native");
    assert!(created["number"].as_str().unwrap().parse::<i64>().unwrap() > 0);

    let (status, got) = call(
        &app,
        &token,
        "GetSubscription",
        json!({"subscriptionId": id}),
    )
    .await;
    assert_eq!((status, &got["subscription"]), (200, &created));

    let second = create(
        &app,
        &token,
        json!({"owner": "library", "repository": "nginx", "family": "EVENT_FAMILY_REGISTRY",
               "url": "https://x.example.com/", "format": "FORMAT_ANGOS"}),
    )
    .await;
    let (_, page) = call(
        &app,
        &token,
        "ListSubscriptions",
        json!({"owner": "library", "pageSize": 1}),
    )
    .await;
    assert_eq!(page["subscriptions"], json!([created]));
    let next = page["nextPageToken"].as_str().unwrap();
    let (_, rest) = call(
        &app,
        &token,
        "ListSubscriptions",
        json!({"owner": "library", "pageSize": 1, "pageToken": next}),
    )
    .await;
    assert_eq!(rest["subscriptions"], json!([second]));
    assert!(rest.get("nextPageToken").is_none(), "{rest}");
    let (_, nginx) = call(
        &app,
        &token,
        "ListSubscriptions",
        json!({"owner": "library", "repository": "nginx"}),
    )
    .await;
    assert_eq!(nginx["subscriptions"], json!([second]));

    let (status, updated) = call(
        &app,
        &token,
        "UpdateSubscription",
        json!({"subscription": {"subscriptionId": id, "format": "FORMAT_CLOUDEVENTS",
                                "eventTypes": ["*"], "authHeader": "", "name": "ci-2",
                                "owner": "ignored"},
               "updateMask": "format,eventTypes,authHeader,name"}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    let updated = &updated["subscription"];
    assert_eq!(updated["format"], "FORMAT_CLOUDEVENTS");
    assert!(
        updated.get("eventTypes").is_none(),
        "* is every type: {updated}"
    );
    assert!(updated.get("hasAuthHeader").is_none(), "cleared: {updated}");
    assert_eq!(updated["name"], "ci-2");
    assert_eq!(updated["owner"], "library");
    assert_eq!(updated["repositoryFilters"], json!(["^prod/"]), "untouched");

    let (status, paused) = call(
        &app,
        &token,
        "PauseSubscription",
        json!({"subscriptionId": id, "reason": "maintenance"}),
    )
    .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["subscription"]["state"], "SUBSCRIPTION_STATE_PAUSED");
    assert_eq!(paused["subscription"]["stateReason"], "maintenance");
    assert!(paused["subscription"]["stateTime"].is_string());
    let (_, listed) = call(
        &app,
        &token,
        "ListSubscriptions",
        json!({"owner": "library", "state": "SUBSCRIPTION_STATE_PAUSED"}),
    )
    .await;
    assert_eq!(listed["subscriptions"].as_array().unwrap().len(), 1);
    let (status, resumed) = call(
        &app,
        &token,
        "ResumeSubscription",
        json!({"subscriptionId": id}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        resumed["subscription"]["state"],
        "SUBSCRIPTION_STATE_ACTIVE"
    );
    assert!(resumed["subscription"].get("stateReason").is_none());

    let (status, disabled) = call(
        &app,
        &token,
        "UpdateSubscription",
        json!({"subscription": {"subscriptionId": id, "state": "SUBSCRIPTION_STATE_DISABLED",
                                "stateReason": "endpoint retired"},
               "updateMask": "state"}),
    )
    .await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(
        disabled["subscription"]["state"],
        "SUBSCRIPTION_STATE_DISABLED"
    );
    assert_eq!(disabled["subscription"]["stateReason"], "endpoint retired");
    let (status, refused) = call(
        &app,
        &token,
        "PauseSubscription",
        json!({"subscriptionId": id}),
    )
    .await;
    assert_error(status, &refused, 400, "failed_precondition", "disabled");

    let (status, _) = call(
        &app,
        &token,
        "DeleteSubscription",
        json!({"subscriptionId": id}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, gone) = call(
        &app,
        &token,
        "GetSubscription",
        json!({"subscriptionId": id}),
    )
    .await;
    assert_error(status, &gone, 404, "not_found", "no such subscription");
    app.assert_owner_counts_true().await;
}

#[tokio::test]
async fn a_bsr_webhook_is_a_subscription_and_the_bsr_api_shows_only_its_own() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let hook = app
        .create(&token, "acme", "petapis", &app.callback("a"))
        .await["webhookId"]
        .clone();
    let native = create(
        &app,
        &token,
        json!({"owner": "acme", "repository": "petapis", "family": "EVENT_FAMILY_BSR",
               "url": "https://slack.example.com/hook", "format": "FORMAT_SLACK"}),
    )
    .await;
    let (_, listed) = call(&app, &token, "ListSubscriptions", json!({"owner": "acme"})).await;
    let listed = listed["subscriptions"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    let bsr = &listed[0];
    assert_eq!(bsr["subscriptionId"], hook);
    assert_eq!(bsr["managedBy"], "bsr");
    assert_eq!(bsr["family"], "EVENT_FAMILY_BSR");
    assert_eq!(bsr["format"], "FORMAT_CONNECT");
    assert_eq!(bsr["repository"], "petapis");
    assert_eq!(listed[1], native);
    // The BSR's ListWebhooks shows exactly what it showed before.
    let webhooks = app.list(&token, "acme", "petapis", "").await;
    let webhooks = webhooks["webhooks"].as_array().unwrap();
    assert_eq!(webhooks.len(), 1);
    assert_eq!(webhooks[0]["webhookId"], hook);

    // What the BSR's API fixes stays fixed; the rest may change.
    let (status, refused) = call(
        &app,
        &token,
        "UpdateSubscription",
        json!({"subscription": {"subscriptionId": hook, "format": "FORMAT_JSON"},
               "updateMask": "format"}),
    )
    .await;
    assert_error(
        status,
        &refused,
        400,
        "failed_precondition",
        "format of a BSR webhook",
    );
    let (status, named) = call(
        &app,
        &token,
        "UpdateSubscription",
        json!({"subscription": {"subscriptionId": hook, "name": "bsr-hook"},
               "updateMask": "name"}),
    )
    .await;
    assert_eq!(status, 200, "{named}");
    assert_eq!(named["subscription"]["name"], "bsr-hook");
    // Another token's owner sees nothing of it.
    let stranger = app.token(&["globex"]).await;
    let (status, hidden) = call(
        &app,
        &stranger,
        "GetSubscription",
        json!({"subscriptionId": hook}),
    )
    .await;
    assert_error(status, &hidden, 404, "not_found", "no such subscription");
    let (status, denied) = call(
        &app,
        &stranger,
        "ListSubscriptions",
        json!({"owner": "acme"}),
    )
    .await;
    assert_eq!(status, 403, "{denied}");
}

#[tokio::test]
async fn list_event_types_names_every_family_its_types_and_formats() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let (status, all) = call(&app, &token, "ListEventTypes", json!({})).await;
    assert_eq!(status, 200);
    let families = all["families"].as_array().unwrap();
    assert_eq!(families.len(), 4);
    let registry = &families[1];
    assert_eq!(registry["family"], "EVENT_FAMILY_REGISTRY");
    let pushed = &registry["eventTypes"][0];
    assert_eq!(pushed["name"], "artifact.pushed");
    assert_eq!(pushed["harborType"], "PUSH_ARTIFACT");
    assert_eq!(pushed["cloudeventsType"], "harbor.artifact.pushed");
    assert_eq!(pushed["angosKinds"], json!(["manifest.push", "tag.create"]));
    assert_eq!(
        registry["formats"],
        json!([
            "FORMAT_JSON",
            "FORMAT_HARBOR",
            "FORMAT_CLOUDEVENTS",
            "FORMAT_ANGOS",
            "FORMAT_SLACK",
            "FORMAT_TEAMS"
        ])
    );
    assert_eq!(families[2]["open"], true);
    let operational = &families[3];
    assert_eq!(operational["family"], "EVENT_FAMILY_WEBHOOKD");
    assert_eq!(
        operational["eventTypes"][0]["name"],
        "webhookd.subscription.failing"
    );
    assert_eq!(
        operational["eventTypes"][1]["name"],
        "webhookd.subscription.disabled"
    );
    assert_eq!(
        operational["formats"],
        json!(["FORMAT_JSON", "FORMAT_SLACK", "FORMAT_TEAMS"])
    );
    let (_, github) = call(
        &app,
        &token,
        "ListEventTypes",
        json!({"family": "EVENT_FAMILY_GITHUB"}),
    )
    .await;
    assert_eq!(github["families"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn every_bad_input_is_invalid_argument_naming_its_field_and_writes_nothing() {
    let app = spawn_app().await;
    let token = app.token(&["library", "octo"]).await;
    let registry = |extra: Value| {
        let mut s = json!({"owner": "library", "family": "EVENT_FAMILY_REGISTRY",
                           "url": "https://h.example.com/hook"});
        s.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s
    };
    let cases = [
        (
            registry(json!({"repositoryFilters": ["("]})),
            "repositoryFilters[0]",
            "repository_filters[0] is not a valid regular expression",
        ),
        (
            registry(json!({"tagFilters": ["x".repeat(300)]})),
            "long pattern",
            "tag_filters[0] is 300 bytes long",
        ),
        (
            registry(json!({"tagFilters": ["\\w{1000}\\w{1000}"]})),
            "huge compiled",
            "tag_filters[0] is not a valid regular expression",
        ),
        (
            registry(json!({"repositoryFilters": vec!["a"; 11]})),
            "too many",
            "repository_filters has 11 patterns",
        ),
        (
            registry(json!({"eventTypes": ["PUSH_ARTIFACT"]})),
            "unknown type",
            "event_types[0]: unknown event type \"PUSH_ARTIFACT\"",
        ),
        (
            registry(json!({"format": "FORMAT_GITHUB"})),
            "format",
            "format: github cannot render registry events",
        ),
        (
            registry(json!({"authHeader": "Bearer a\r\nX-Injected: 1"})),
            "auth header",
            "auth_header may contain only visible ASCII",
        ),
        (
            registry(json!({"headers": [{"name": "Transfer-Encoding", "value": "chunked"}]})),
            "hop-by-hop",
            "headers[0].name \"Transfer-Encoding\" is hop-by-hop or set by webhookd",
        ),
        (
            registry(json!({"headers": [{"name": "webhook-signature", "value": "x"}]})),
            "own header",
            "headers[0].name \"webhook-signature\"",
        ),
        (
            registry(json!({"url": "ftp://h.example.com/"})),
            "url",
            "url must use https",
        ),
        (
            registry(json!({"repository": "Nginx"})),
            "repository",
            "repository must be OCI path components",
        ),
        (
            registry(json!({"formatOptions": {"connectJson": true}})),
            "options",
            "format_options.connect_json applies to FORMAT_CONNECT only",
        ),
        (
            registry(json!({"repository": "nginx", "repositoryFilters": ["^a"]})),
            "filters need scope",
            "repository_filters apply to a subscription to all",
        ),
        (
            json!({"owner": "library", "url": "https://h.example.com/"}),
            "family",
            "subscription.family is required",
        ),
        (
            json!({"owner": "octo", "family": "EVENT_FAMILY_GITHUB", "url": "https://h.example.com/", "tagFilters": ["x"]}),
            "tags",
            "tag_filters apply to the registry family only",
        ),
        (
            json!({"owner": "octo", "family": "EVENT_FAMILY_GITHUB", "url": "https://h.example.com/", "eventTypes": ["Push"]}),
            "github name",
            "event_types[0]: unknown event type \"Push\"",
        ),
    ];
    for (subscription, what, message) in cases {
        let (status, body) = call(
            &app,
            &token,
            "CreateSubscription",
            json!({ "subscription": subscription }),
        )
        .await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["code"], "invalid_argument", "{what}: {body}");
        let text = body["message"].as_str().unwrap();
        assert!(text.contains(message), "{what}: {text}");
    }
    assert_eq!(app.webhook_count().await, 0, "nothing written");

    let id = create(&app, &token, registry(json!({"name": "one"}))).await["subscriptionId"].clone();
    let (status, dup) = call(
        &app,
        &token,
        "CreateSubscription",
        json!({"subscription": registry(json!({"name": "one"}))}),
    )
    .await;
    assert_error(
        status,
        &dup,
        409,
        "already_exists",
        "already has a subscription named \"one\"",
    );
    let updates = [
        (json!("repository"), "repository cannot change"),
        (
            json!("callbackUrl"),
            "\"callback_url\" is not a field UpdateSubscription changes",
        ),
        (json!(""), "update_mask is required"),
    ];
    for (mask, message) in updates {
        let (status, body) = call(
            &app,
            &token,
            "UpdateSubscription",
            json!({"subscription": {"subscriptionId": id}, "updateMask": mask}),
        )
        .await;
        assert_error(status, &body, 400, "invalid_argument", message);
    }
    let (status, body) = call(
        &app,
        &token,
        "UpdateSubscription",
        json!({"subscription": {"subscriptionId": id, "tagFilters": ["[z-a]"]},
               "updateMask": "tagFilters"}),
    )
    .await;
    assert_error(status, &body, 400, "invalid_argument", "tag_filters[0]");
    let (_, got) = call(
        &app,
        &token,
        "GetSubscription",
        json!({"subscriptionId": id}),
    )
    .await;
    assert!(
        got["subscription"].get("tagFilters").is_none(),
        "unchanged: {got}"
    );
    assert_eq!(app.webhook_count().await, 1);
}
