//! The callback URL of a webhook: where the `buf.alpha.webhook.v1alpha1.EventService/Event`
//! listener runs. Validated once, when a webhook is created.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::error::{Error, Result};

/// Every callback URL's path must end with the Connect path of the listener's RPC.
pub const EVENT_PATH_SUFFIX: &str = "/buf.alpha.webhook.v1alpha1.EventService/Event";

/// The longest callback URL accepted, in bytes.
pub const MAX_CALLBACK_URL_BYTES: usize = 2048;

/// An absolute `https` (or, in insecure mode, `http`) URL with no userinfo, query or
/// fragment, whose path ends in [`EVENT_PATH_SUFFIX`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackUrl(Url);

impl CallbackUrl {
    /// Validates `value`. `allow_insecure` (the server's `--allow-insecure-callbacks`)
    /// additionally admits `http` and loopback or private hosts.
    pub fn parse(value: &str, allow_insecure: bool) -> Result<Self> {
        let invalid = |why: String| Err(Error::InvalidArgument(format!("callback_url {why}")));
        if value.is_empty() {
            return invalid("is required".into());
        }
        if value.len() > MAX_CALLBACK_URL_BYTES {
            return invalid(format!(
                "is {} bytes long; the limit is {MAX_CALLBACK_URL_BYTES}",
                value.len()
            ));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("must not contain spaces or control characters".into());
        }
        let url = match Url::parse(value) {
            Ok(url) => url,
            Err(e) => return invalid(format!("is not an absolute URL ({e})")),
        };
        match url.scheme() {
            "https" => {}
            "http" if allow_insecure => {}
            "http" => {
                return invalid(
                    "must use https (start the server with --allow-insecure-callbacks to allow http)"
                        .into(),
                );
            }
            other => return invalid(format!("must use https, not {other:?}")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return invalid("must not contain a user name or password".into());
        }
        if url.query().is_some() {
            return invalid("must not have a query string".into());
        }
        if url.fragment().is_some() {
            return invalid("must not have a fragment".into());
        }
        if !url.path().ends_with(EVENT_PATH_SUFFIX) {
            return invalid(format!("path must end with {EVENT_PATH_SUFFIX}"));
        }
        check_host(&url, allow_insecure)?;
        Ok(Self(url))
    }

    /// The URL as stored and sent back to clients.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Refuses hosts that name this machine or a private network, unless insecure mode is on.
/// Domain names other than `localhost` are resolved only at delivery time.
fn check_host(url: &Url, allow_insecure: bool) -> Result<()> {
    let internal = match url.host() {
        None => {
            return Err(Error::InvalidArgument(
                "callback_url must have a host".into(),
            ));
        }
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(Host::Ipv4(ip)) => is_internal_ip(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => is_internal_ip(IpAddr::V6(ip)),
    };
    if internal && !allow_insecure {
        return Err(Error::InvalidArgument(
            "callback_url host is loopback or private (start the server with \
             --allow-insecure-callbacks to allow it)"
                .into(),
        ));
    }
    Ok(())
}

/// True for addresses that are not on the public internet: loopback, private, link-local,
/// carrier-grade NAT, unspecified, broadcast, documentation, multicast and unique-local.
pub fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "https://hooks.example.com/buf.alpha.webhook.v1alpha1.EventService/Event";

    #[test]
    fn accepts_a_public_https_listener() {
        assert_eq!(
            CallbackUrl::parse(GOOD, false).expect("valid").as_str(),
            GOOD
        );
    }

    #[test]
    fn rejects_each_broken_rule_with_an_actionable_message() {
        let cases = [
            ("", "is required"),
            (
                "hooks.example.com/buf.alpha.webhook.v1alpha1.EventService/Event",
                "absolute",
            ),
            (
                "http://hooks.example.com/buf.alpha.webhook.v1alpha1.EventService/Event",
                "--allow-insecure-callbacks",
            ),
            (
                "ftp://hooks.example.com/buf.alpha.webhook.v1alpha1.EventService/Event",
                "must use https",
            ),
            (
                "https://u:p@hooks.example.com/buf.alpha.webhook.v1alpha1.EventService/Event",
                "user name",
            ),
            (
                "https://hooks.example.com/buf.alpha.webhook.v1alpha1.EventService/Event?x=1",
                "query",
            ),
            (
                "https://hooks.example.com/buf.alpha.webhook.v1alpha1.EventService/Event#x",
                "fragment",
            ),
            ("https://hooks.example.com/hook", "path must end"),
            (
                "https://127.0.0.1/buf.alpha.webhook.v1alpha1.EventService/Event",
                "loopback or private",
            ),
            (
                "https://10.1.2.3/buf.alpha.webhook.v1alpha1.EventService/Event",
                "loopback or private",
            ),
            (
                "https://[::1]/buf.alpha.webhook.v1alpha1.EventService/Event",
                "loopback or private",
            ),
            (
                "https://localhost/buf.alpha.webhook.v1alpha1.EventService/Event",
                "loopback or private",
            ),
            (
                "https://hooks.example.com/a b/buf.alpha.webhook.v1alpha1.EventService/Event",
                "spaces",
            ),
        ];
        for (input, expected) in cases {
            let err = CallbackUrl::parse(input, false)
                .expect_err(input)
                .to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
        let long = format!(
            "https://h.example.com/{}{EVENT_PATH_SUFFIX}",
            "a".repeat(2048)
        );
        assert!(CallbackUrl::parse(&long, true).is_err());
    }

    #[test]
    fn insecure_mode_admits_http_and_loopback() {
        let url = "http://127.0.0.1:9000/buf.alpha.webhook.v1alpha1.EventService/Event";
        assert!(CallbackUrl::parse(url, true).is_ok());
    }

    #[test]
    fn classifies_internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal_ip(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal_ip(ip.parse().expect("ip")), "{ip}");
        }
    }
}
