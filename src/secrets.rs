//! The client's credentials, kept apart so that nothing prints them by accident.

use std::fmt;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A secret string: its `Debug` and `Display` never show the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: &str) -> Self {
        Secret(Arc::from(value))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// HMAC-SHA256 keyed with the app secret, as `X-Hub-Signature-256` uses it. Keyed once per
/// `set_config`: keying hashes two blocks, which every webhook would otherwise repeat.
#[derive(Clone)]
pub struct WebhookMac(Hmac<Sha256>);

impl WebhookMac {
    /// True when `signature` is the MAC of `body`.
    pub fn verify(self, body: &[u8], signature: &[u8; 32]) -> bool {
        let mut mac = self.0;
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    }
}

impl fmt::Debug for WebhookMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookMac(<redacted>)")
    }
}

#[derive(Default, Debug)]
struct Values {
    token: Secret,
    app_secret: Secret,
    /// `None` while no app secret is set.
    webhook_mac: Option<WebhookMac>,
    webhook_token: Secret,
    /// Values replaced by `set_config` / `set_webhook_token`, newest last: requests still
    /// running with them may still produce texts (redacted too).
    previous: Vec<Secret>,
}

/// How many replaced secrets stay redacted (a few rotations' worth).
const PREVIOUS_KEPT: usize = 8;

impl Values {
    fn retire(&mut self, old: Secret) {
        let value = old.expose();
        let still_used = [&self.token, &self.app_secret, &self.webhook_token]
            .iter()
            .any(|current| current.expose() == value);
        if value.is_empty() || still_used || self.previous.iter().any(|p| p.expose() == value) {
            return;
        }
        if self.previous.len() == PREVIOUS_KEPT {
            self.previous.remove(0);
        }
        self.previous.push(old);
    }
}

/// Token, app secret and webhook verify token of one client.
#[derive(Default, Debug)]
pub struct Credentials {
    values: RwLock<Values>,
}

const REDACTED: &str = "[redacted]";
/// Shorter strings are not redacted: replacing "a" everywhere would garble every text.
const MIN_REDACTED_LEN: usize = 4;

impl Credentials {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Values> {
        self.values.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Values> {
        self.values.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the token, and the app secret unless `app_secret` is `None` (kept as it is).
    pub fn set_config(&self, token: &str, app_secret: Option<&str>) {
        let mut v = self.write();
        let old_token = std::mem::replace(&mut v.token, Secret::new(token));
        v.retire(old_token);
        let Some(app_secret) = app_secret else {
            return;
        };
        let old_secret = std::mem::replace(&mut v.app_secret, Secret::new(app_secret));
        v.retire(old_secret);
        v.webhook_mac = (!app_secret.is_empty()).then(|| {
            WebhookMac(
                Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
                    .expect("HMAC takes any key length"),
            )
        });
    }

    pub fn set_webhook_token(&self, token: &str) {
        let mut v = self.write();
        let old = std::mem::replace(&mut v.webhook_token, Secret::new(token));
        v.retire(old);
    }

    pub fn token(&self) -> Secret {
        self.read().token.clone()
    }

    pub fn app_secret(&self) -> Secret {
        self.read().app_secret.clone()
    }

    /// The app secret's webhook MAC; `None` while no app secret is set.
    pub fn webhook_mac(&self) -> Option<WebhookMac> {
        self.read().webhook_mac.clone()
    }

    pub fn webhook_token(&self) -> Secret {
        self.read().webhook_token.clone()
    }

    /// Replaces every configured secret inside `text` (Graph may echo what it was sent).
    pub fn redact(&self, text: &str) -> String {
        let v = self.read();
        let mut out = text.to_string();
        let current = [&v.token, &v.app_secret, &v.webhook_token];
        for secret in current.into_iter().chain(v.previous.iter()) {
            let s = secret.expose();
            if s.len() >= MIN_REDACTED_LEN && out.contains(s) {
                out = out.replace(s, REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request still running with the token SetConfig replaced may produce a text with it.
    #[test]
    fn replaced_secrets_stay_redacted() {
        let c = Credentials::default();
        c.set_config("EAAold-token", Some("old-app-secret"));
        c.set_webhook_token("old-verify");
        c.set_config("EAAnew-token", Some("new-app-secret"));
        c.set_webhook_token("new-verify");
        assert_eq!(
            c.redact("EAAold-token old-app-secret old-verify EAAnew-token"),
            "[redacted] [redacted] [redacted] [redacted]"
        );
        // Bounded: the oldest are forgotten after many rotations.
        for i in 0..20 {
            c.set_config(&format!("EAAtoken-{i}"), Some("new-app-secret"));
        }
        assert_eq!(c.redact("EAAtoken-19 EAAtoken-12"), "[redacted] [redacted]");
        assert_eq!(c.redact("EAAtoken-0"), "EAAtoken-0");
    }

    #[test]
    fn secrets_never_print() {
        let c = Credentials::default();
        c.set_config("EAAtoken123", Some("appsecret456"));
        assert!(!format!("{c:?}").contains("EAAtoken123"));
        assert!(!format!("{c:?}").contains("appsecret456"));
        assert_eq!(
            c.redact("bad token EAAtoken123 for appsecret456"),
            "bad token [redacted] for [redacted]"
        );
    }
}
