//! Callback URL parsing and the internal-address rule: no panic, and whatever is accepted
//! without --allow-insecure-callbacks is https and names no internal address literally.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhookd::domain::{CallbackUrl, is_internal_ip};

fuzz_target!(|data: &[u8]| {
    if data.len() >= 16 {
        let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&data[..16]).unwrap());
        let _ = is_internal_ip(v6.into());
        let v4 = std::net::Ipv4Addr::new(data[0], data[1], data[2], data[3]);
        let internal = is_internal_ip(v4.into());
        // An IPv4 address and its IPv4-mapped IPv6 form are judged alike.
        assert_eq!(internal, is_internal_ip(v4.to_ipv6_mapped().into()));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = CallbackUrl::parse(text, true);
    if let Ok(url) = CallbackUrl::parse(text, false) {
        let parsed = reqwest_free_parse(url.as_str());
        assert!(url.as_str().starts_with("https://"), "{}", url.as_str());
        if let Some(ip) = parsed {
            assert!(!is_internal_ip(ip), "{} was accepted", url.as_str());
        }
    }
});

/// The host of an accepted URL when it is an IP literal.
fn reqwest_free_parse(url: &str) -> Option<std::net::IpAddr> {
    let rest = url.strip_prefix("https://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host.parse().ok()
}
