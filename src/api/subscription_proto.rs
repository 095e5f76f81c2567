//! `webhookd.v1` subscription messages to domain values and back: every field checked, every
//! error naming its field.

use buffa::{EnumValue, MessageField};
use buffa_types::google::protobuf::Timestamp;

use crate::domain::{
    CallbackUrl, CustomHeaders, Family, Filters, Format, FormatOptions, GitHubContentType,
    RepositoryName, Subscription, SubscriptionSpec, SubscriptionState, check_header_value,
    check_texts, parse_event_types,
};
use crate::error::{Error, Result};
use crate::proto::webhookd::v1 as pb;
use crate::store::activity::Activity;

/// The family a request names; `UNSPECIFIED` is refused.
pub fn family(value: EnumValue<pb::EventFamily>, field: &str) -> Result<Family> {
    match value.as_known() {
        Some(pb::EventFamily::EVENT_FAMILY_BSR) => Ok(Family::Bsr),
        Some(pb::EventFamily::EVENT_FAMILY_REGISTRY) => Ok(Family::Registry),
        Some(pb::EventFamily::EVENT_FAMILY_GITHUB) => Ok(Family::GitHub),
        Some(pb::EventFamily::EVENT_FAMILY_WEBHOOKD) => Ok(Family::Webhookd),
        _ => Err(Error::InvalidArgument(format!(
            "{field} is required: EVENT_FAMILY_BSR, EVENT_FAMILY_REGISTRY, EVENT_FAMILY_GITHUB \
             or EVENT_FAMILY_WEBHOOKD"
        ))),
    }
}

/// A family filter: `UNSPECIFIED` is any.
pub fn family_filter(value: EnumValue<pb::EventFamily>) -> Result<Option<Family>> {
    if value.to_i32() == 0 {
        return Ok(None);
    }
    family(value, "family").map(Some)
}

/// The proto of a family.
pub fn family_proto(family: Family) -> pb::EventFamily {
    match family {
        Family::Bsr => pb::EventFamily::EVENT_FAMILY_BSR,
        Family::Registry => pb::EventFamily::EVENT_FAMILY_REGISTRY,
        Family::GitHub => pb::EventFamily::EVENT_FAMILY_GITHUB,
        Family::Webhookd => pb::EventFamily::EVENT_FAMILY_WEBHOOKD,
    }
}

/// The format a request names, `UNSPECIFIED` being the family's default.
fn format(value: EnumValue<pb::Format>, family: Family) -> Result<Format> {
    let format = match value.as_known() {
        Some(pb::Format::FORMAT_UNSPECIFIED) => family.default_format(),
        Some(pb::Format::FORMAT_CONNECT) => Format::Connect,
        Some(pb::Format::FORMAT_JSON) => Format::Json,
        Some(pb::Format::FORMAT_GITHUB) => Format::GitHub,
        Some(pb::Format::FORMAT_HARBOR) => Format::Harbor,
        Some(pb::Format::FORMAT_CLOUDEVENTS) => Format::CloudEvents,
        Some(pb::Format::FORMAT_ANGOS) => Format::Angos,
        Some(pb::Format::FORMAT_SLACK) => Format::Slack,
        Some(pb::Format::FORMAT_TEAMS) => Format::Teams,
        None => {
            return Err(Error::InvalidArgument(format!(
                "format {} is unknown",
                value.to_i32()
            )));
        }
    };
    format.check_family(family)?;
    Ok(format)
}

/// The proto of a format.
pub fn format_proto(format: Format) -> pb::Format {
    match format {
        Format::Connect => pb::Format::FORMAT_CONNECT,
        Format::Json => pb::Format::FORMAT_JSON,
        Format::GitHub => pb::Format::FORMAT_GITHUB,
        Format::Harbor => pb::Format::FORMAT_HARBOR,
        Format::CloudEvents => pb::Format::FORMAT_CLOUDEVENTS,
        Format::Angos => pb::Format::FORMAT_ANGOS,
        Format::Slack => pb::Format::FORMAT_SLACK,
        Format::Teams => pb::Format::FORMAT_TEAMS,
    }
}

/// A state filter: `UNSPECIFIED` is any.
pub fn state_filter(value: EnumValue<pb::SubscriptionState>) -> Result<Option<SubscriptionState>> {
    match value.as_known() {
        Some(pb::SubscriptionState::SUBSCRIPTION_STATE_UNSPECIFIED) => Ok(None),
        Some(other) => Ok(Some(state(other))),
        None => Err(Error::InvalidArgument(format!(
            "state {} is unknown",
            value.to_i32()
        ))),
    }
}

/// The state a request sets; `UNSPECIFIED` is refused.
pub fn state_to_set(value: EnumValue<pb::SubscriptionState>) -> Result<SubscriptionState> {
    state_filter(value)?.ok_or_else(|| {
        Error::InvalidArgument(
            "subscription.state is required with update_mask \"state\": \
             SUBSCRIPTION_STATE_ACTIVE, _PAUSED or _DISABLED"
                .into(),
        )
    })
}

fn state(value: pb::SubscriptionState) -> SubscriptionState {
    match value {
        pb::SubscriptionState::SUBSCRIPTION_STATE_PAUSED => SubscriptionState::Paused,
        pb::SubscriptionState::SUBSCRIPTION_STATE_DISABLED => SubscriptionState::Disabled,
        _ => SubscriptionState::Active,
    }
}

fn state_proto(state: SubscriptionState) -> pb::SubscriptionState {
    match state {
        SubscriptionState::Active => pb::SubscriptionState::SUBSCRIPTION_STATE_ACTIVE,
        SubscriptionState::Paused => pb::SubscriptionState::SUBSCRIPTION_STATE_PAUSED,
        SubscriptionState::Disabled => pb::SubscriptionState::SUBSCRIPTION_STATE_DISABLED,
    }
}

fn options(value: Option<&pb::FormatOptions>, format: Format) -> Result<FormatOptions> {
    let Some(value) = value else {
        return Ok(FormatOptions::default());
    };
    let github_content_type = match value.github_content_type.as_known() {
        Some(pb::GithubContentType::GITHUB_CONTENT_TYPE_FORM) => GitHubContentType::Form,
        Some(_) => GitHubContentType::Json,
        None => {
            return Err(Error::InvalidArgument(
                "format_options.github_content_type is unknown".into(),
            ));
        }
    };
    if value.connect_json && format != Format::Connect {
        return Err(Error::InvalidArgument(
            "format_options.connect_json applies to FORMAT_CONNECT only".into(),
        ));
    }
    if github_content_type == GitHubContentType::Form && format != Format::GitHub {
        return Err(Error::InvalidArgument(
            "format_options.github_content_type applies to FORMAT_GITHUB only".into(),
        ));
    }
    Ok(FormatOptions {
        connect_json: value.connect_json,
        github_content_type,
    })
}

fn options_proto(options: FormatOptions) -> pb::FormatOptions {
    pb::FormatOptions {
        connect_json: options.connect_json,
        github_content_type: EnumValue::from(match options.github_content_type {
            GitHubContentType::Json => pb::GithubContentType::GITHUB_CONTENT_TYPE_JSON,
            GitHubContentType::Form => pb::GithubContentType::GITHUB_CONTENT_TYPE_FORM,
        }),
        ..Default::default()
    }
}

/// The auth header a request sets: empty is none.
pub fn auth_header(value: &str) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    check_header_value("auth_header", value)?;
    Ok(Some(value.to_owned()))
}

/// The parts of a subscription a request may set, checked for `family`, one field at a
/// time (each named on error). `allow_insecure` is `--allow-insecure-callbacks`.
pub struct SpecFields<'a> {
    /// The request's subscription.
    pub from: &'a pb::Subscription,
    /// The family it is (or will be) of.
    pub family: Family,
    /// `--allow-insecure-callbacks`.
    pub allow_insecure: bool,
}

impl SpecFields<'_> {
    /// The repository scope (`None`: every repository).
    pub fn repository(&self) -> Result<Option<RepositoryName>> {
        match self.from.repository.as_str() {
            "" => Ok(None),
            name => RepositoryName::parse_in(self.family, "repository", name).map(Some),
        }
    }
    /// Event types.
    pub fn event_types(&self) -> Result<Vec<String>> {
        parse_event_types(self.family, &self.from.event_types)
    }
    /// Repository filters.
    pub fn repository_filters(&self) -> Result<Filters> {
        Filters::parse("repository_filters", &self.from.repository_filters)
    }
    /// Tag filters (registry events only).
    pub fn tag_filters(&self) -> Result<Filters> {
        if !self.from.tag_filters.is_empty() && self.family != Family::Registry {
            return Err(Error::InvalidArgument(
                "tag_filters apply to the registry family only".into(),
            ));
        }
        Filters::parse("tag_filters", &self.from.tag_filters)
    }
    /// The target URL.
    pub fn url(&self) -> Result<CallbackUrl> {
        CallbackUrl::parse_target("url", &self.from.url, self.allow_insecure)
    }
    /// The format.
    pub fn format(&self) -> Result<Format> {
        format(self.from.format, self.family)
    }
    /// The format's options, for `format`.
    pub fn format_options(&self, format: Format) -> Result<FormatOptions> {
        options(self.from.format_options.as_option(), format)
    }
    /// Custom headers.
    pub fn headers(&self) -> Result<CustomHeaders> {
        CustomHeaders::parse(
            self.from
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        )
    }
    /// Name and description.
    pub fn texts(&self) -> Result<(String, String)> {
        check_texts(&self.from.name, &self.from.description)?;
        Ok((self.from.name.clone(), self.from.description.clone()))
    }

    /// Every field, for a new subscription.
    pub fn spec(&self) -> Result<SubscriptionSpec> {
        let format = self.format()?;
        let (name, description) = self.texts()?;
        let spec = SubscriptionSpec {
            repository: self.repository()?,
            event_types: self.event_types()?,
            repository_filters: self.repository_filters()?,
            tag_filters: self.tag_filters()?,
            url: self.url()?,
            format,
            format_options: self.format_options(format)?,
            auth_header: auth_header(&self.from.auth_header)?,
            skip_tls_verify: self.from.skip_tls_verify,
            headers: self.headers()?,
            omit_standard_headers: self.from.omit_standard_headers,
            no_retries: self.from.no_retries,
            name,
            description,
        };
        check_filters_fit(&spec)?;
        Ok(spec)
    }
}

/// Repository filters need several repositories to choose from.
pub fn check_filters_fit(spec: &SubscriptionSpec) -> Result<()> {
    if spec.repository.is_some() && !spec.repository_filters.is_empty() {
        return Err(Error::InvalidArgument(
            "repository_filters apply to a subscription to all of an owner's repositories \
             (leave repository empty)"
                .into(),
        ));
    }
    Ok(())
}

/// The spec a stored subscription has, to change some of it.
pub fn stored_spec(current: &Subscription) -> Result<SubscriptionSpec> {
    let url = CallbackUrl::from_stored(&current.url).ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "stored URL of {} does not parse",
            current.id
        ))
    })?;
    Ok(SubscriptionSpec {
        repository: None,
        event_types: current.event_types.clone(),
        repository_filters: Filters::stored(current.repository_filters.clone()),
        tag_filters: Filters::stored(current.tag_filters.clone()),
        url,
        format: current.format,
        format_options: current.format_options,
        auth_header: None,
        skip_tls_verify: current.skip_tls_verify,
        headers: current.headers.clone(),
        omit_standard_headers: current.omit_standard_headers,
        no_retries: current.no_retries,
        name: current.name.clone(),
        description: current.description.clone(),
    })
}

/// The proto of a stored subscription.
pub fn to_proto(s: Subscription) -> pb::Subscription {
    pb::Subscription {
        subscription_id: s.id.to_string(),
        number: s.number,
        owner: s.owner,
        repository: s.repository,
        family: EnumValue::from(family_proto(s.family)),
        event_types: s.event_types,
        repository_filters: s.repository_filters,
        tag_filters: s.tag_filters,
        url: s.url,
        format: EnumValue::from(format_proto(s.format)),
        format_options: MessageField::some(options_proto(s.format_options)),
        has_auth_header: s.has_auth_header,
        skip_tls_verify: s.skip_tls_verify,
        headers: s
            .headers
            .0
            .into_iter()
            .map(|(name, value)| pb::Header {
                name,
                value,
                ..Default::default()
            })
            .collect(),
        omit_standard_headers: s.omit_standard_headers,
        no_retries: s.no_retries,
        name: s.name,
        description: s.description,
        state: EnumValue::from(state_proto(s.state)),
        state_time: s.state_time.map_or_else(MessageField::none, |t| {
            MessageField::some(Timestamp::from(t))
        }),
        state_reason: s.state_reason,
        managed_by: s.face,
        create_time: MessageField::some(Timestamp::from(s.create_time)),
        update_time: MessageField::some(Timestamp::from(s.update_time)),
        last_response: MessageField::some(pb::LastResponse {
            status: "unused".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `subscription` with its last triggers, last response and run of failures.
pub fn with_activity(mut subscription: pb::Subscription, activity: &Activity) -> pb::Subscription {
    subscription.last_triggers = activity
        .triggers
        .iter()
        .map(|(event_type, time)| pb::LastTrigger {
            event_type: event_type.clone(),
            last_trigger_time: MessageField::some(Timestamp::from(*time)),
            ..Default::default()
        })
        .collect();
    if let Some(last) = &activity.last_response {
        let answered = last.code.is_some_and(|c| (200..300).contains(&c));
        subscription.last_response = MessageField::some(pb::LastResponse {
            code: last.code.unwrap_or(0),
            status: if answered { "active" } else { "failing" }.into(),
            message: last.message.clone(),
            time: MessageField::some(Timestamp::from(last.time)),
            ..Default::default()
        });
    }
    if let Some(failing) = activity.failing {
        subscription.failing = MessageField::some(pb::Failing {
            since: MessageField::some(Timestamp::from(failing.since)),
            failures: failing.failures,
            ..Default::default()
        });
    }
    subscription
}
