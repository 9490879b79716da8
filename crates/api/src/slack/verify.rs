//! Slack request signatures: `v0=` + hex HMAC-SHA256, keyed by the app's signing secret,
//! over `v0:{X-Slack-Request-Timestamp}:{raw body}`; requests older or newer than five
//! minutes are refused so a captured request cannot be replayed.

use crate::error::{Error, Result};
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from now, in seconds.
pub const REPLAY_WINDOW_SECS: i64 = 5 * 60;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The timestamp header.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Result<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).map_err(|error| {
        Error::internal(
            "the Slack signing secret",
            std::io::Error::other(error.to_string()),
        )
    })?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    Ok(mac)
}

/// The `X-Slack-Signature` Slack sends for `body` at `timestamp`.
///
/// # Errors
/// Only if HMAC refuses the key, which it does not for any length.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> Result<String> {
    let mac = mac(secret, &timestamp.to_string(), body)?;
    Ok(format!("v0={}", hex::encode(mac.finalize().into_bytes())))
}

/// Checks a request's signature and timestamp against `now` (Unix seconds).
///
/// # Errors
/// [`Error::Unauthenticated`] for a missing, stale or wrong signature.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8], now: i64) -> Result<()> {
    let refuse = |reason: &str| Error::Unauthenticated {
        reason: format!("Slack request refused: {reason}"),
    };
    let timestamp = headers
        .get(TIMESTAMP_HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| refuse("no X-Slack-Request-Timestamp"))?;
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| refuse("X-Slack-Request-Timestamp is not a number"))?;
    if (now - seconds).abs() > REPLAY_WINDOW_SECS {
        return Err(refuse("timestamp outside the five-minute window"));
    }
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("v0="))
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
        .ok_or_else(|| refuse("no v0 X-Slack-Signature"))?;
    // verify_slice compares in constant time.
    mac(secret, timestamp, body)?
        .verify_slice(&signature)
        .map_err(|_| refuse("signature does not match"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    // The example from Slack's "Verifying requests from Slack" guide.
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: i64 = 1_531_420_618;
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn headers(timestamp: i64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            TIMESTAMP_HEADER,
            HeaderValue::from_str(&timestamp.to_string()).expect("header"),
        );
        headers.insert(
            SIGNATURE_HEADER,
            HeaderValue::from_str(signature).expect("header"),
        );
        headers
    }

    #[test]
    fn slacks_documented_example_signs_and_verifies() {
        assert_eq!(sign(SECRET, TIMESTAMP, BODY).expect("sign"), SIGNATURE);
        verify(SECRET, &headers(TIMESTAMP, SIGNATURE), BODY, TIMESTAMP + 10).expect("valid");
    }

    #[test]
    fn tampered_stale_and_unsigned_requests_are_refused() {
        let mut tampered = BODY.to_vec();
        tampered[0] = b'T';
        assert!(verify(SECRET, &headers(TIMESTAMP, SIGNATURE), &tampered, TIMESTAMP).is_err());
        assert!(verify(
            "another-secret",
            &headers(TIMESTAMP, SIGNATURE),
            BODY,
            TIMESTAMP
        )
        .is_err());
        let stale = TIMESTAMP + REPLAY_WINDOW_SECS + 1;
        assert!(verify(SECRET, &headers(TIMESTAMP, SIGNATURE), BODY, stale).is_err());
        assert!(verify(SECRET, &HeaderMap::new(), BODY, TIMESTAMP).is_err());
        assert!(verify(SECRET, &headers(TIMESTAMP, "v1=00"), BODY, TIMESTAMP).is_err());
    }
}
