//! Who calls the simulated cluster. A request without credentials is the cluster's admin, as it
//! always was (the API listens on 127.0.0.1 for this user's tools, and its kubeconfig carries
//! no user). A request with `Authorization: Bearer TOKEN` is the service account the token was
//! minted for through the TokenRequest API (`kubectl create token SA -n NS`), and is held to
//! RBAC ([`super::rbac`]); a token the cluster did not mint, or one expired, or one whose
//! service account was deleted (or deleted and created again) is answered 401 Unauthorized.
//!
//! Tokens are 256 random bits from the thread's CSPRNG (seeded by the operating system, not by
//! the scenario's seed), kept in memory only, compared as whole strings and never logged or
//! written anywhere but the TokenRequest's response.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::rbac::{Policy, User, GROUP};
use super::store::{meta_str, ResId, Store};

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials: everything is allowed.
    Admin,
    ServiceAccount {
        namespace: String,
        name: String,
    },
}

impl Caller {
    /// The RBAC user of a service account; `None` for the admin, who is not checked.
    pub fn user(&self) -> Option<User> {
        match self {
            Caller::Admin => None,
            Caller::ServiceAccount { namespace, name } => {
                Some(User::service_account(namespace, name))
            }
        }
    }
}

struct Minted {
    namespace: String,
    name: String,
    /// The service account's uid when the token was minted: a token dies with its account.
    uid: String,
    expires: SystemTime,
}

/// The tokens minted so far.
#[derive(Default)]
pub struct Tokens {
    minted: Mutex<HashMap<String, Minted>>,
}

impl std::fmt::Debug for Tokens {
    /// Never the tokens themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.minted.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Tokens({n} minted)")
    }
}

/// The shortest lifetime a TokenRequest may ask for, and the default (Kubernetes' own).
pub const MIN_EXPIRATION: Duration = Duration::from_secs(600);
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(3600);
/// The longest lifetime granted; a longer request is cut to it, as the API server does.
pub const MAX_EXPIRATION: Duration = Duration::from_secs(48 * 3600);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a bearer token was refused (all answered alike: 401 Unauthorized).
#[derive(Debug, PartialEq, Eq)]
pub struct Unauthorized;

impl Tokens {
    /// A new token for the service account `namespace/name` (with `uid`), valid for `ttl`.
    pub fn mint(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        ttl: Duration,
    ) -> (String, SystemTime) {
        let bytes: [u8; 32] = rand::random();
        let token = format!("firedrill-sim.{}", hex(&bytes));
        let now = SystemTime::now();
        let expires = now + ttl;
        let mut minted = self.minted.lock().unwrap_or_else(|p| p.into_inner());
        minted.retain(|_, m| m.expires > now);
        minted.insert(
            token.clone(),
            Minted {
                namespace: namespace.into(),
                name: name.into(),
                uid: uid.into(),
                expires,
            },
        );
        (token, expires)
    }

    /// The caller a request's headers name: the admin without an `Authorization: Bearer`
    /// header, else the service account of a valid token.
    pub fn authenticate(
        &self,
        store: &Store,
        authorization: Option<&[u8]>,
    ) -> Result<Caller, Unauthorized> {
        let Some(header) = authorization else {
            return Ok(Caller::Admin);
        };
        let header = std::str::from_utf8(header).map_err(|_| Unauthorized)?;
        let header = header.trim();
        let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            // Other schemes were never looked at; they stay what they were (the admin).
            return Ok(Caller::Admin);
        }
        let token = token.trim();
        let (namespace, name, uid) = {
            let minted = self.minted.lock().unwrap_or_else(|p| p.into_inner());
            let m = minted.get(token).ok_or(Unauthorized)?;
            if m.expires <= SystemTime::now() {
                return Err(Unauthorized);
            }
            (m.namespace.clone(), m.name.clone(), m.uid.clone())
        };
        let sa = store
            .get(&ResId::new("", "serviceaccounts"), &namespace, &name)
            .ok_or(Unauthorized)?;
        if meta_str(&sa, "uid") != uid {
            return Err(Unauthorized);
        }
        Ok(Caller::ServiceAccount { namespace, name })
    }
}

/// Roles and bindings as the store holds them now.
pub struct StorePolicy<'a>(pub &'a Store);

impl StorePolicy<'_> {
    fn all(&self, plural: &str, ns: Option<&str>) -> Vec<Value> {
        let (items, _) = self.0.list(&ResId::new(GROUP, plural), ns, |_| true);
        items.iter().map(|o| o.value().clone()).collect()
    }
    fn one(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.0
            .get(&ResId::new(GROUP, plural), ns, name)
            .map(|o| o.value().clone())
    }
}

impl Policy for StorePolicy<'_> {
    fn cluster_role_bindings(&self) -> Vec<Value> {
        self.all("clusterrolebindings", None)
    }
    fn role_bindings(&self, namespace: &str) -> Vec<Value> {
        self.all("rolebindings", Some(namespace))
    }
    fn cluster_role(&self, name: &str) -> Option<Value> {
        self.one("clusterroles", "", name)
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Value> {
        self.one("roles", namespace, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store_with_sa(uid: &str) -> Store {
        let store = Store::new(100);
        store
            .create(
                &ResId::new("", "serviceaccounts"),
                json!({"metadata": {"namespace": "drills", "name": "firedrill", "uid": uid}}),
            )
            .unwrap();
        store
    }

    #[test]
    fn no_credentials_are_the_admin_and_a_minted_token_its_service_account() {
        let store = store_with_sa("u1");
        let tokens = Tokens::default();
        assert_eq!(tokens.authenticate(&store, None), Ok(Caller::Admin));
        assert_eq!(
            tokens.authenticate(&store, Some(b"Basic YWRtaW46YWRtaW4=")),
            Ok(Caller::Admin)
        );
        let (token, expires) = tokens.mint("drills", "firedrill", "u1", DEFAULT_EXPIRATION);
        assert!(expires > SystemTime::now() + Duration::from_secs(3500));
        // 256 random bits, hex: never the same twice, never guessable from the seed.
        let hex_part = token.strip_prefix("firedrill-sim.").unwrap();
        assert_eq!(hex_part.len(), 64);
        assert_ne!(
            token,
            tokens
                .mint("drills", "firedrill", "u1", DEFAULT_EXPIRATION)
                .0
        );
        let header = format!("Bearer {token}");
        assert_eq!(
            tokens.authenticate(&store, Some(header.as_bytes())),
            Ok(Caller::ServiceAccount {
                namespace: "drills".into(),
                name: "firedrill".into()
            })
        );
        assert!(!format!("{tokens:?}").contains(hex_part));
        for bad in ["Bearer ", "Bearer nope", "bearer firedrill-sim.00"] {
            assert_eq!(
                tokens.authenticate(&store, Some(bad.as_bytes())),
                Err(Unauthorized),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_token_dies_with_its_expiry_and_its_service_account() {
        let tokens = Tokens::default();
        let (expired, _) = tokens.mint("drills", "firedrill", "u1", Duration::ZERO);
        let store = store_with_sa("u1");
        let h = format!("Bearer {expired}");
        assert_eq!(
            tokens.authenticate(&store, Some(h.as_bytes())),
            Err(Unauthorized)
        );
        let (token, _) = tokens.mint("drills", "firedrill", "u1", DEFAULT_EXPIRATION);
        let h = format!("Bearer {token}");
        // The account deleted and created again has another uid: the old token is dead.
        assert_eq!(
            tokens.authenticate(&store_with_sa("u2"), Some(h.as_bytes())),
            Err(Unauthorized)
        );
        assert_eq!(
            tokens.authenticate(&Store::new(10), Some(h.as_bytes())),
            Err(Unauthorized)
        );
    }
}
