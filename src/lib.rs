//! mcpwatch: Kafka metrics in; rolling features, hot windows, partitioned history,
//! forecasts, anomaly alerts and capacity plans out.
//!
//! The modules follow a sample's journey:
//! [`ingest`] (Kafka → [`sample::Sample`]) → [`store`] (PostgreSQL) → [`api`] (HTTP),
//! wired together by [`daemon`] from a typed [`config::Config`].

pub mod alert;
pub mod anomaly;
pub mod api;
pub mod cache;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod downstream;
pub mod features;
pub mod forecast;
pub mod generate;
pub mod ingest;
pub mod lifecycle;
pub mod loadtest;
pub mod sample;
pub mod store;
pub mod telemetry;

#[cfg(test)]
pub mod testing;
