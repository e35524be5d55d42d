//! Who may talk to firedrill's local HTTP APIs (the proxy's control API, the simulated
//! cluster). Listening on 127.0.0.1 is not enough: a web page in the operator's browser can
//! send requests there (a `text/plain` POST needs no CORS preflight), and a page whose DNS name
//! is rebound to 127.0.0.1 reads the answers too. So a request must be addressed to a
//! loopback name (`Host`: `127.0.0.0/8`, `[::1]` or `localhost`), and any `Origin` it carries
//! must be one too. Each API renders the refusal in its own error shape.

use axum::http::{header, HeaderMap};

/// Why a request was refused: 403 and this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Whether `host` (an authority: `name`, `name:port`, `[v6]:port`) names this machine.
pub fn authority_is_loopback(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, _)) => v6,
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Checks `Host` (or, without one, the request target's authority) and `Origin`.
pub fn check(headers: &HeaderMap, uri_authority: Option<&str>) -> Result<(), Refused> {
    let host = match headers.get(header::HOST) {
        Some(h) => h.to_str().unwrap_or("").to_string(),
        None => uri_authority.unwrap_or("").to_string(),
    };
    if !authority_is_loopback(&host) {
        return Err(Refused(format!(
            "refusing a request addressed to Host `{}`: this API answers only requests to a loopback address (127.0.0.1, [::1], localhost), so that a web page cannot reach it through a DNS name rebound to this machine",
            host.chars().take(100).collect::<String>()
        )));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
            .unwrap_or("");
        if !authority_is_loopback(authority) {
            return Err(Refused(format!(
                "refusing a request from Origin `{}`: a web page may not drive this API",
                origin.chars().take(100).collect::<String>()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_nothing_else() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8474",
            "127.1.2.3:1",
            "localhost:80",
            "LOCALHOST",
            "[::1]:8474",
            "[::1]",
        ] {
            assert!(authority_is_loopback(ok), "{ok}");
        }
        for bad in [
            "",
            "attacker.example",
            "attacker.example:8474",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "0.0.0.0:8474",
            "10.0.0.1",
            "[::]:1",
            "[::1",
            "127.0.0.1:80x",
        ] {
            assert!(!authority_is_loopback(bad), "{bad}");
        }
    }

    #[test]
    fn a_foreign_or_null_origin_is_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8474".parse().unwrap());
        assert!(check(&h, None).is_ok());
        h.insert(header::ORIGIN, "http://localhost:3000".parse().unwrap());
        assert!(check(&h, None).is_ok());
        h.insert(header::ORIGIN, "https://attacker.example".parse().unwrap());
        assert!(check(&h, None).is_err());
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(check(&h, None).is_err());
        h.remove(header::ORIGIN);
        h.remove(header::HOST);
        assert!(check(&h, None).is_err());
        assert!(check(&h, Some("127.0.0.1:1")).is_ok());
    }
}
