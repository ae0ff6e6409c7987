//! Settings of the HTTP server (`[http]`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Requests taking longer are answered with 503.
    pub request_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
        }
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "http.listen",
                format!("{:?} is not an ip:port address", self.listen),
                "use e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\"",
            ));
        }
        if !(1024..=64 << 20).contains(&self.max_body_bytes) {
            return Err(ConfigError::invalid(
                "http.max_body_bytes",
                format!("{} is outside 1024..=67108864", self.max_body_bytes),
                "use e.g. 65536",
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "http.request_timeout_ms",
                "is 0",
                "use e.g. 10000",
            ));
        }
        Ok(())
    }
}
