//! Every RPC's request as the Connect runtime decodes it (binary and JSON), the Publish
//! event counter that runs before decoding, and the request validators behind them: none
//! may panic, and the counter must agree with the decoder whenever the decoder accepts.
#![no_main]

use buffa::Message as _;
use libfuzzer_sys::fuzz_target;
use webhookd::api::gate::{count_json_events, count_proto_events};
use webhookd::domain::{
    ApiToken, CallbackUrl, CustomHeaders, DeliveryId, Family, Filters, OutboundEvent, OwnerName,
    RepositoryName, WebhookId, check_header_value, check_texts, parse_event_types,
};
use webhookd::proto::buf::alpha::registry::v1alpha1 as reg;
use webhookd::proto::webhookd::v1 as pb;

fn decode_all(data: &[u8]) {
    let _ = reg::CreateWebhookRequest::decode_from_slice(data);
    let _ = reg::ListWebhooksRequest::decode_from_slice(data);
    let _ = reg::DeleteWebhookRequest::decode_from_slice(data);
    let _ = pb::GetSigningSecretRequest::decode_from_slice(data);
    let _ = pb::RotateSigningSecretRequest::decode_from_slice(data);
    let _ = pb::ListDeliveriesRequest::decode_from_slice(data);
    let _ = pb::GetDeliveryRequest::decode_from_slice(data);
    let _ = pb::RecoverDeliveriesRequest::decode_from_slice(data);
    // An attempt record's headers, as stored.
    let _ = webhookd::domain::header_record::decode(
        data,
        webhookd::domain::header_record::Context {
            delivery_id: "01a233f9-254b-7573-95e7-38609259c5cd",
            start_seconds: 1_796_168_295,
        },
    );
    let _ = pb::RedeliverRequest::decode_from_slice(data);
    if let Ok(request) = pb::CreateSubscriptionRequest::decode_from_slice(data) {
        subscription(request.subscription.as_option());
    }
    if let Ok(request) = pb::UpdateSubscriptionRequest::decode_from_slice(data) {
        subscription(request.subscription.as_option());
    }
    let _ = pb::ListSubscriptionsRequest::decode_from_slice(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(request) = serde_json::from_str::<pb::CreateSubscriptionRequest>(text) {
            subscription(request.subscription.as_option());
        }
        let _ = serde_json::from_str::<pb::UpdateSubscriptionRequest>(text);
        let _ = serde_json::from_str::<reg::CreateWebhookRequest>(text);
        let _ = serde_json::from_str::<reg::ListWebhooksRequest>(text);
        let _ = serde_json::from_str::<pb::ListDeliveriesRequest>(text);
        let _ = serde_json::from_str::<pb::GetDeliveryRequest>(text);
        let _ = serde_json::from_str::<pb::RecoverDeliveriesRequest>(text);
        let _ = OwnerName::parse(text);
        let _ = RepositoryName::parse(text);
        let _ = WebhookId::parse(text);
        let _ = DeliveryId::parse(text);
        let _ = ApiToken::from_authorization(Some(text));
        for family in Family::ALL {
            let _ = OwnerName::parse_in(family, "owner", text);
            let _ = RepositoryName::parse_in(family, "repository", text);
            let _ = family.check_type("event_types[0]", text);
        }
        let _ = CallbackUrl::parse_target("url", text, false);
        let _ = check_header_value("auth_header", text);
    }
}

/// The checks CreateSubscription and UpdateSubscription run on a subscription's fields.
fn subscription(from: Option<&pb::Subscription>) {
    let Some(from) = from else { return };
    for family in Family::ALL {
        let _ = parse_event_types(family, &from.event_types);
    }
    // Compiling is the costly part: a pattern past the limits must be refused, not built.
    if let Ok(filters) = Filters::parse("repository_filters", &from.repository_filters) {
        let _ = filters.matches(&from.repository);
    }
    let _ = Filters::parse("tag_filters", &from.tag_filters);
    let _ = CustomHeaders::parse(
        from.headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    );
    let _ = check_texts(&from.name, &from.description);
}

fuzz_target!(|data: &[u8]| {
    decode_all(data);
    let counted = count_proto_events(data, 1000);
    if let Ok(request) = pb::PublishRequest::decode_from_slice(data) {
        assert_eq!(
            counted,
            request.events.len().min(1001),
            "the proto counter disagrees"
        );
        for item in &request.events {
            if let Some(event) = item.event.as_option() {
                let _ = OutboundEvent::from_request(event, Some(&item.idempotency_key));
            }
            if let Some(event) = item.registry.as_option() {
                let _ = OutboundEvent::from_registry(event, Some(&item.idempotency_key));
            }
            if let Some(event) = item.github.as_option() {
                let _ = OutboundEvent::from_github(event, Some(&item.idempotency_key));
            }
        }
    }
    let counted = count_json_events(data, 1000);
    if let Ok(request) = serde_json::from_slice::<pb::PublishRequest>(data) {
        assert!(
            counted >= request.events.len().min(1001),
            "the JSON counter counted fewer"
        );
    }
});
