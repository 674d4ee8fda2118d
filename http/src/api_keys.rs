//! API keys (`api_keys`): who may call the orders API, and with which scopes.
//!
//! A key is `ofk_<key id>_<secret>`: the key id (12 hex digits) is public and finds the row; the
//! secret is 32 random bytes. The whole key is shown once, when it is created; the table keeps
//! only its SHA-256 (256 random bits need no slow hash). Revoking sets `revoked_at_ms` and the
//! next request with that key fails: every request looks its key up, nothing is cached.

use base64::prelude::*;
use orderflow_activities::db::{Db, now_ms};
use orderflow_activities::sql;
use orderflow_domain::ClientId;
use orderflow_worker::settings::SecretString;
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::collections::BTreeSet;
use std::fmt;
use subtle::ConstantTimeEq;

/// What a key may do. Every route of the API names the scope it needs (ARCHITECTURE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `POST /v1/orders`.
    OrdersCreate,
    /// `GET /v1/orders/{id}`: the client's own orders.
    OrdersRead,
    /// `POST /v1/orders/{id}/cancel`: the client's own orders.
    OrdersCancel,
    /// Operator actions (`POST /v1/orders/{id}/resolve`) on any client's orders, which this
    /// scope also lets the key read and cancel.
    Operator,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::OrdersCreate,
        Scope::OrdersRead,
        Scope::OrdersCancel,
        Scope::Operator,
    ];

    /// The scopes a shop's backend needs; the default of `orderflow api-keys create`.
    pub const CLIENT: [Scope; 3] = [Scope::OrdersCreate, Scope::OrdersRead, Scope::OrdersCancel];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::OrdersCreate => "orders:create",
            Scope::OrdersRead => "orders:read",
            Scope::OrdersCancel => "orders:cancel",
            Scope::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {text:?}; known: {}", known.join(", "))
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const PREFIX: &str = "ofk_";
const KEY_ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;
/// `SECRET_BYTES` in unpadded base64url.
const SECRET_CHARS: usize = 43;

/// A key just created: the only time its secret exists outside the caller's hands.
pub struct CreatedKey {
    pub key_id: String,
    pub client: ClientId,
    pub scopes: BTreeSet<Scope>,
    /// The full key, to give to the client once.
    pub key: SecretString,
}

/// A key as `list` shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub key_id: String,
    pub client: String,
    pub scopes: Vec<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// An authenticated caller: the key's client and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: String,
    pub client: ClientId,
    pub scopes: BTreeSet<Scope>,
}

impl Caller {
    /// Whether the key may do what `scope` allows. An operator may also read and cancel.
    pub fn has(&self, scope: Scope) -> bool {
        let operator_may = matches!(scope, Scope::OrdersRead | Scope::OrdersCancel);
        self.scopes.contains(&scope) || (operator_may && self.scopes.contains(&Scope::Operator))
    }
}

/// Why a presented key does not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not of the form `ofk_<12 hex>_<secret>`.
    Malformed,
    /// No such key, or the secret does not match.
    Unknown,
    Revoked,
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes
}

/// Creates a key for `client` with `scopes`.
pub async fn create(
    db: &Db,
    client: &ClientId,
    scopes: &BTreeSet<Scope>,
) -> Result<CreatedKey, sqlx::Error> {
    let key_id = hex::encode(random_bytes::<KEY_ID_BYTES>());
    let secret = BASE64_URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>());
    let key = format!("{PREFIX}{key_id}_{secret}");
    let scope_list: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    sql!(
        "INSERT INTO api_keys (key_id, client_id, scopes, secret_sha256, created_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .on(db.engine())
    .bind(&key_id)
    .bind(client.as_str())
    .bind(scope_list.join(" "))
    .bind(hash(&key))
    .bind(now_ms())
    .execute(db.writes())
    .await?;
    Ok(CreatedKey {
        key_id,
        client: client.clone(),
        scopes: scopes.clone(),
        key: SecretString::from(key),
    })
}

pub async fn list(db: &Db) -> Result<Vec<KeyInfo>, sqlx::Error> {
    sql!(
        "SELECT key_id, client_id, scopes, created_at_ms, revoked_at_ms FROM api_keys
          ORDER BY client_id, created_at_ms",
    )
    .on(db.engine())
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| {
        let scopes: String = r.try_get(2)?;
        Ok(KeyInfo {
            key_id: r.try_get(0)?,
            client: r.try_get(1)?,
            scopes: scopes.split_whitespace().map(str::to_owned).collect(),
            created_at_ms: r.try_get(3)?,
            revoked_at_ms: r.try_get(4)?,
        })
    })
    .collect()
}

/// Revokes a key by its id (or the whole key). `false` when there is no such key; revoking a
/// revoked key keeps its first revocation time and answers `true`.
pub async fn revoke(db: &Db, key_or_id: &str) -> Result<bool, sqlx::Error> {
    let key_id = public_id(key_or_id);
    sql!("UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $2) WHERE key_id = $1")
        .on(db.engine())
        .bind(key_id)
        .bind(now_ms())
        .execute(db.writes())
        .await
        .map(|done| done.rows_affected() == 1)
}

/// The public id of a key, or the id itself: what may be shown of either.
pub fn public_id(key_or_id: &str) -> &str {
    match key_or_id.strip_prefix(PREFIX) {
        Some(rest) => rest.split('_').next().unwrap_or_default(),
        None => key_or_id,
    }
}

/// Splits a presented key into its id and checks its shape, before any database work.
fn key_id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let id_ok = key_id.len() == 2 * KEY_ID_BYTES && key_id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = secret.len() == SECRET_CHARS
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some(key_id)
}

/// The caller a presented key stands for.
pub async fn authenticate(db: &Db, key: &str) -> Result<Result<Caller, Refused>, sqlx::Error> {
    let Some(key_id) = key_id_of(key) else {
        return Ok(Err(Refused::Malformed));
    };
    let row = sql!(
        "SELECT client_id, scopes, secret_sha256, revoked_at_ms FROM api_keys WHERE key_id = $1",
    )
    .on(db.engine())
    .bind(key_id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(Err(Refused::Unknown));
    };
    let stored: String = row.try_get(2)?;
    if !bool::from(stored.as_bytes().ct_eq(hash(key).as_bytes())) {
        return Ok(Err(Refused::Unknown));
    }
    if row.try_get::<Option<i64>, _>(3)?.is_some() {
        return Ok(Err(Refused::Revoked));
    }
    let client: String = row.try_get(0)?;
    let scopes: String = row.try_get(1)?;
    Ok(Ok(Caller {
        key_id: key_id.to_owned(),
        // Written by `create` from a valid id; a row edited by hand into nonsense is no caller.
        client: match ClientId::parse(client) {
            Ok(client) => client,
            Err(_) => return Ok(Err(Refused::Unknown)),
        },
        scopes: scopes
            .split_whitespace()
            .filter_map(|s| Scope::parse(s).ok())
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_through_their_names() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
        }
        assert!(Scope::parse("orders:delete").unwrap_err().contains("known"));
    }

    #[test]
    fn only_well_formed_keys_reach_the_database() {
        let good = format!("ofk_0123456789ab_{}", "A".repeat(43));
        assert_eq!(key_id_of(&good), Some("0123456789ab"));
        for bad in [
            "",
            "Bearer x",
            "ofk_",
            "ofk_0123456789ab",
            "ofk_0123456789ab_",
            &format!("ofk_0123456789a_{}", "A".repeat(43)),
            &format!("ofk_0123456789aZ_{}", "A".repeat(43)),
            &format!("ofk_0123456789ab_{}", "A".repeat(42)),
            &format!("ofk_0123456789ab_{}!", "A".repeat(42)),
            &format!("xfk_0123456789ab_{}", "A".repeat(43)),
        ] {
            assert_eq!(key_id_of(bad), None, "{bad:?}");
        }
    }
}
