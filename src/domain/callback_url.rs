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
        Self::parse_as("callback_url", value, allow_insecure, true)
    }

    /// Validates a subscription's target URL (field `field`): as [`Self::parse`], but any
    /// path, and a query string allowed (Teams and some Slack-style URLs carry their
    /// signature there).
    pub fn parse_target(field: &str, value: &str, allow_insecure: bool) -> Result<Self> {
        Self::parse_as(field, value, allow_insecure, false)
    }

    fn parse_as(field: &str, value: &str, allow_insecure: bool, bsr: bool) -> Result<Self> {
        let invalid = |why: String| Err(Error::InvalidArgument(format!("{field} {why}")));
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
        if bsr && url.query().is_some() {
            return invalid("must not have a query string".into());
        }
        if url.fragment().is_some() {
            return invalid("must not have a fragment".into());
        }
        if bsr && !url.path().ends_with(EVENT_PATH_SUFFIX) {
            return invalid(format!("path must end with {EVENT_PATH_SUFFIX}"));
        }
        check_host(&url, allow_insecure)?;
        Ok(Self(url))
    }

    /// A URL read back from the database (validated when it was stored).
    pub fn from_stored(value: &str) -> Option<Self> {
        Url::parse(value).ok().map(Self)
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

/// Refuses hosts that are not public (see [`is_internal_ip`]) or name this machine, unless
/// insecure mode is on. Domain names other than `localhost` are resolved only at delivery
/// time, where the same rule applies to every address they resolve to.
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
            "callback_url host is loopback or private, or otherwise not a public unicast \
             address (start the server with --allow-insecure-callbacks to allow it)"
                .into(),
        ));
    }
    Ok(())
}

/// True for every address that is not global unicast: webhookd delivers only to the public
/// internet unless insecure mode is on. An allow-list, not a list of what is internal:
///
/// * IPv6: only `2000::/3` (global unicast), less its special-purpose blocks
///   (`2001::/23`: Teredo, benchmarking, ORCHID and other protocol assignments;
///   `2001:db8::/32` and `3fff::/20`: documentation; `2002::/16`: 6to4, which carries an
///   IPv4 address). Everything outside `2000::/3` is refused: loopback, unspecified,
///   IPv4-compatible (`::/96`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), unique-local,
///   site-local, link-local, multicast. An IPv4-mapped address (`::ffff:0:0/96`) is judged
///   as the IPv4 address it maps.
/// * IPv4: everything but the IANA special-purpose blocks: `0/8`, `10/8`, `100.64/10`,
///   `127/8`, `169.254/16`, `172.16/12`, `192.0.0/24`, `192.0.2/24`, `192.88.99/24`
///   (6to4 relays), `192.168/16`, `198.18/15`, `198.51.100/24`, `203.0.113/24`, `224/4`
///   (multicast) and `240/4` (reserved, and broadcast).
pub fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !is_global_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => !is_global_v4(v4),
            None => !is_global_v6(v6),
        },
    }
}

/// The IPv4 special-purpose blocks, as (network, prefix length).
const SPECIAL_V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([192, 88, 99, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
];

/// The special-purpose blocks inside IPv6 global unicast, as (first segments, prefix length).
const SPECIAL_V6: &[([u16; 2], u32)] = &[
    ([0x2001, 0x0000], 23),
    ([0x2001, 0x0db8], 32),
    ([0x2002, 0x0000], 16),
    ([0x3fff, 0x0000], 20),
];

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !SPECIAL_V4
        .iter()
        .any(|&(net, len)| bits >> (32 - len) == u32::from(Ipv4Addr::from(net)) >> (32 - len))
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let [a, b, ..] = ip.segments();
    let head = (u32::from(a) << 16) | u32::from(b);
    let global_unicast = a & 0xe000 == 0x2000;
    global_unicast
        && !SPECIAL_V6.iter().any(|&([x, y], len)| {
            head >> (32 - len) == ((u32::from(x) << 16) | u32::from(y)) >> (32 - len)
        })
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

    /// Every form of address that is not global unicast, including those that carry an
    /// internal IPv4 address inside an IPv6 one.
    pub const INTERNAL: &[&str] = &[
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "192.0.0.8",
        "192.0.2.1",
        "192.88.99.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.1",
        "203.0.113.1",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "::a00:1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a00:1",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::1",
        "2001::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:db8::1",
        "3fff::1",
        "fec0::1",
        "fc00::1",
        "fd00::1",
        "fe80::1",
        "ff02::1",
        "100::1",
    ];

    #[test]
    fn only_global_unicast_addresses_are_external() {
        for ip in INTERNAL {
            assert!(is_internal_ip(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450::1",
        ] {
            assert!(!is_internal_ip(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn a_callback_on_any_internal_address_is_refused_at_create_time() {
        for ip in INTERNAL {
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                (*ip).to_owned()
            };
            let url = format!("https://{host}{EVENT_PATH_SUFFIX}");
            let err = CallbackUrl::parse(&url, false).expect_err(&url).to_string();
            assert!(err.contains("loopback or private"), "{url}: {err}");
            assert!(
                CallbackUrl::parse(&url, true).is_ok(),
                "{url} in insecure mode"
            );
        }
    }
}
