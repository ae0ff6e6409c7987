//! API keys: how they look, how they are stored, and how a request's key is checked.
//!
//! A key is `mcpw_<id>_<secret>`: `id` is 12 hex digits (public: it names the caller in logs
//! and in the plans audit), `secret` is 64 hex digits (256 random bits from the OS-seeded
//! CSPRNG). PostgreSQL keeps only `SHA-256(secret)` (`api_keys.secret_hash`); a fast hash is
//! enough because the secret is random, not a password. A request's secret is hashed and
//! compared with the stored hash in constant time (`subtle`).
//!
//! Checking a key never waits for PostgreSQL: [`KeyCache`] holds the whole key table in
//! memory and a background task re-reads it every `api.key_refresh_ms`. So a key created or
//! revoked with `mcpwatch apikey` (another process) takes effect within one refresh period
//! plus one query — 2 s by default. If the table has never been read (PostgreSQL down at
//! start) keyed routes answer 503; after that the last table read stays in force.
//!
//! An embedding can add keys held in memory only ([`KeyCache::with_fixed_keys`]): the demo's
//! key on the embedded store, where there is no key table at all. The refresher never touches
//! them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

/// Prefix of every key.
pub const KEY_PREFIX: &str = "mcpw_";
const ID_HEX: usize = 12;
const SECRET_HEX: usize = 64;

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no PostgreSQL connection available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("no key with id {0:?}; `mcpwatch apikey list` shows the ids")]
    NotFound(String),
    #[error("key name {0:?} is empty or longer than 200 characters")]
    BadName(String),
}

/// A freshly made key. `token` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub token: String,
}

/// A key as `apikey list` shows it (never the secret).
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// SHA-256 of a key's secret part.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Makes a new random key (not stored).
pub fn generate() -> (String, String, [u8; 32]) {
    let mut id = [0u8; ID_HEX / 2];
    let mut secret = [0u8; SECRET_HEX / 2];
    let mut rng = rand::rng();
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let (id, secret) = (hex(&id), hex(&secret));
    let hash = secret_hash(&secret);
    let token = format!("{KEY_PREFIX}{id}_{secret}");
    (id, token, hash)
}

/// Splits `mcpw_<id>_<secret>` into its parts; `None` if it does not have that shape.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hexish = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexish(id, ID_HEX) && hexish(secret, SECRET_HEX)).then_some((id, secret))
}

/// Creates a key named `name` in `api_keys` and returns it (the only time the secret is seen).
pub async fn create_key(pool: &deadpool_postgres::Pool, name: &str) -> Result<NewKey, KeyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(KeyError::BadName(name.to_string()));
    }
    let (id, token, hash) = generate();
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO api_keys (id, name, secret_hash) VALUES ($1, $2, $3)",
            &[&id, &name, &&hash[..]],
        )
        .await?;
    Ok(NewKey { id, token })
}

/// Every key, oldest first.
pub async fn list_keys(pool: &deadpool_postgres::Pool) -> Result<Vec<KeyInfo>, KeyError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, name, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| KeyInfo {
            id: r.get(0),
            name: r.get(1),
            created_at: r.get(2),
            revoked_at: r.get(3),
        })
        .collect())
}

/// Revokes a key (idempotent: revoking twice keeps the first time).
pub async fn revoke_key(pool: &deadpool_postgres::Pool, id: &str) -> Result<(), KeyError> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1",
            &[&id],
        )
        .await?;
    if n == 0 {
        return Err(KeyError::NotFound(id.to_string()));
    }
    Ok(())
}

/// One key as held in memory.
#[derive(Debug, Clone)]
struct CachedKey {
    hash: [u8; 32],
    revoked: bool,
}

/// Who made a request: the key id (`None` when auth is off). Put in the request's extensions
/// by the auth middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: Option<Arc<str>>,
}

/// The verdict on a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid(Arc<str>),
    /// Well-formed but unknown, or the secret does not match.
    Unknown,
    Revoked,
    /// The key table has not been read yet.
    Unavailable,
}

/// The key table in memory, refreshed in the background.
pub struct KeyCache {
    /// id → hash and revocation. Replaced wholesale by each refresh (write lock held for a
    /// swap only); read by every keyed request.
    keys: RwLock<Option<HashMap<Arc<str>, CachedKey>>>,
    /// Keys held in memory only, next to the table's (never replaced by a refresh).
    fixed: HashMap<Arc<str>, CachedKey>,
    /// Where the table lives; `None` in tests that load keys by hand, and on the embedded
    /// store (no key table).
    pool: Option<deadpool_postgres::Pool>,
    refresh: Duration,
}

impl KeyCache {
    pub fn new(pool: Option<deadpool_postgres::Pool>, refresh: Duration) -> KeyCache {
        KeyCache {
            keys: RwLock::new(None),
            fixed: HashMap::new(),
            pool,
            refresh,
        }
    }

    /// Adds keys `(id, SHA-256 of the secret)` held in memory only: valid whatever the key
    /// table says, and kept across refreshes. Without a key table (no pool) these are all
    /// the keys there are, so the cache counts as read: other keys are unknown (401), not
    /// unavailable (503).
    pub fn with_fixed_keys(mut self, keys: impl IntoIterator<Item = (String, [u8; 32])>) -> Self {
        self.fixed.extend(keys.into_iter().map(|(id, hash)| {
            (
                Arc::from(id),
                CachedKey {
                    hash,
                    revoked: false,
                },
            )
        }));
        if self.pool.is_none() {
            let table = self.keys.get_mut().unwrap_or_else(|e| e.into_inner());
            table.get_or_insert_with(HashMap::new);
        }
        self
    }

    /// Checks a bearer token.
    pub fn verify(&self, token: &str) -> Verdict {
        if let Some((id, secret)) = parse_token(token) {
            if let Some((id, key)) = self.fixed.get_key_value(id) {
                return if bool::from(secret_hash(secret).ct_eq(&key.hash)) {
                    Verdict::Valid(id.clone())
                } else {
                    Verdict::Unknown
                };
            }
        }
        let guard = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let Some(keys) = guard.as_ref() else {
            return Verdict::Unavailable;
        };
        let Some((id, secret)) = parse_token(token) else {
            return Verdict::Unknown;
        };
        let Some((id, key)) = keys.get_key_value(id) else {
            return Verdict::Unknown;
        };
        let presented = secret_hash(secret);
        if !bool::from(presented.ct_eq(&key.hash)) {
            return Verdict::Unknown;
        }
        if key.revoked {
            Verdict::Revoked
        } else {
            Verdict::Valid(id.clone())
        }
    }

    /// Reads the whole table once. Returns the number of keys.
    pub async fn refresh(&self) -> Result<usize, KeyError> {
        let Some(pool) = &self.pool else {
            return Ok(0);
        };
        let client = pool.get().await?;
        let rows = client
            .query(
                "SELECT id, secret_hash, revoked_at IS NOT NULL FROM api_keys",
                &[],
            )
            .await?;
        let mut map = HashMap::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get(0);
            let hash: Vec<u8> = r.get(1);
            let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
                tracing::warn!(key = %id, "api key with a malformed hash ignored");
                continue;
            };
            map.insert(
                Arc::from(id),
                CachedKey {
                    hash,
                    revoked: r.get(2),
                },
            );
        }
        let n = map.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(map);
        Ok(n)
    }

    /// Loads keys directly (tests and embedded setups without a key table).
    pub fn load(&self, keys: impl IntoIterator<Item = (String, [u8; 32], bool)>) {
        let map = keys
            .into_iter()
            .map(|(id, hash, revoked)| (Arc::from(id), CachedKey { hash, revoked }))
            .collect();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(map);
    }

    /// The refresh period (the documented bound on how late a revocation can take effect).
    pub fn refresh_period(&self) -> Duration {
        self.refresh
    }

    /// Re-reads the table every refresh period until `shutdown`.
    pub async fn run_refresher(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            match self.refresh().await {
                Ok(_) if failing => {
                    tracing::info!("api key table readable again");
                    failing = false;
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "could not re-read the api key table; keeping the last one");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_malformed_ones_are_refused() {
        let (id, token, hash) = generate();
        let (pid, secret) = parse_token(&token).unwrap();
        assert_eq!(pid, id);
        assert_eq!(secret_hash(secret), hash);
        assert_eq!(token.len(), KEY_PREFIX.len() + ID_HEX + 1 + SECRET_HEX);
        for bad in [
            "",
            "mcpw_",
            "mcpw_abc_def",
            &token[..token.len() - 1],
            &token.replace("mcpw_", "mcpx_"),
            &format!("{token}0"),
            "mcpw_zzzzzzzzzzzz_0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
        // two keys never collide
        assert_ne!(generate().1, token);
    }

    #[test]
    fn verdicts() {
        let cache = KeyCache::new(None, Duration::from_secs(1));
        let (id, token, hash) = generate();
        assert_eq!(cache.verify(&token), Verdict::Unavailable);
        cache.load([(id.clone(), hash, false)]);
        assert_eq!(cache.verify(&token), Verdict::Valid(Arc::from(id.as_str())));
        // right id, wrong secret
        let (other_id, other, _) = generate();
        let forged = token.replace(
            parse_token(&token).unwrap().1,
            parse_token(&other).unwrap().1,
        );
        assert_eq!(cache.verify(&forged), Verdict::Unknown);
        assert_eq!(cache.verify(&other), Verdict::Unknown);
        assert_ne!(other_id, id);
        cache.load([(id, hash, true)]);
        assert_eq!(cache.verify(&token), Verdict::Revoked);
    }

    /// Fixed keys (the demo's) need no table, and a refresh or a load never drops them.
    #[tokio::test]
    async fn fixed_keys_survive_refreshes_and_need_no_table() {
        let (id, token, hash) = generate();
        let (_, other, _) = generate();
        let cache =
            KeyCache::new(None, Duration::from_millis(10)).with_fixed_keys([(id.clone(), hash)]);
        let valid = Verdict::Valid(Arc::from(id.as_str()));
        assert_eq!(cache.verify(&token), valid);
        // no table: an unknown key is a 401, not a 503
        assert_eq!(cache.verify(&other), Verdict::Unknown);
        assert_eq!(cache.verify("garbage"), Verdict::Unknown);
        let cache = Arc::new(cache);
        let shutdown = CancellationToken::new();
        let refresher = tokio::spawn(cache.clone().run_refresher(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(cache.verify(&token), valid);
        cache.load([]);
        assert_eq!(cache.verify(&token), valid);
        shutdown.cancel();
        refresher.await.unwrap();

        // with a key table that was never read, the fixed key still passes; others wait
        let pool = crate::store::pool(&crate::store::StoreConfig {
            url: "postgres://nobody@127.0.0.1:1/none".into(),
            ..Default::default()
        })
        .unwrap();
        let cache =
            KeyCache::new(Some(pool), Duration::from_secs(1)).with_fixed_keys([(id.clone(), hash)]);
        assert_eq!(cache.verify(&token), valid);
        assert_eq!(cache.verify(&other), Verdict::Unavailable);
    }
}
