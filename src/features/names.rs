//! The 82 model feature names, in the exact order of the seed CSV header
//! (`lstm_ready_cluster_data.csv`, columns 3–84, after `hour_offset,total_events`) and of the
//! LSTM metadata's `feature_names`. The order is part of the model contract: never reorder.

/// Number of model features in one vector.
pub const N_FEATURES: usize = 82;

/// The two leading columns of a seed-format CSV, before the 82 features.
pub const CSV_LEADING_COLUMNS: [&str; 2] = ["hour_offset", "total_events"];

/// The model features, in model order.
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "unique_machines",
    "add_events",
    "remove_events",
    "update_events",
    "avg_cpu",
    "avg_memory",
    "std_cpu",
    "std_memory",
    "min_cpu",
    "max_cpu",
    "min_memory",
    "max_memory",
    "unique_switches",
    "unique_platforms",
    "hour_of_day",
    "day_of_week",
    "day_of_month",
    "hour_sin",
    "hour_cos",
    "day_sin",
    "day_cos",
    "lag1_events",
    "lag1_machines",
    "lag1_cpu",
    "lag2_events",
    "lag2_machines",
    "lag2_cpu",
    "lag3_events",
    "lag3_machines",
    "lag3_cpu",
    "lag6_events",
    "lag6_machines",
    "lag6_cpu",
    "lag12_events",
    "lag12_machines",
    "lag12_cpu",
    "lag24_events",
    "lag24_machines",
    "lag24_cpu",
    "ma3_events",
    "ma3_machines",
    "ma3_cpu",
    "ma6_events",
    "ma6_machines",
    "ma6_cpu",
    "ma12_events",
    "ma12_machines",
    "ma12_cpu",
    "ma24_events",
    "ma24_machines",
    "ma24_cpu",
    "ma48_events",
    "ma48_machines",
    "ma48_cpu",
    "roll12_std",
    "roll12_max",
    "roll12_min",
    "roll24_std",
    "roll24_max",
    "roll24_min",
    "pct_change_1h",
    "pct_change_6h",
    "pct_change_24h",
    "diff_1h",
    "diff_6h",
    "diff_24h",
    "cpu_memory_ratio",
    "resource_total",
    "resource_efficiency",
    "events_per_machine",
    "events_quantile",
    "cpu_quantile",
    "memory_quantile",
    "is_high_load",
    "is_low_load",
    "load_category",
    "is_business_hour",
    "is_weekend",
    "is_night",
    "cpu_events_interaction",
    "machines_events_ratio",
    "switches_complexity",
];

/// The 14 raw bucket aggregates at the head of the vector (indices `0..14`); with
/// `total_events` they are the 15 "raw" columns of a seed-format CSV. Everything else is derived.
pub const RAW_FEATURES: usize = 14;

/// Position of a feature in the vector, by name.
pub fn index_of(name: &str) -> Option<usize> {
    FEATURE_NAMES.iter().position(|n| *n == name)
}

/// The full header line of a seed-format CSV (`hour_offset,total_events,<82 features>`).
pub fn csv_header() -> String {
    let mut s = CSV_LEADING_COLUMNS.join(",");
    for n in FEATURE_NAMES {
        s.push(',');
        s.push_str(n);
    }
    s
}

// Indices of every feature, so code reads `F_LAG1_EVENTS` rather than a bare number.
// `tests::names_indices_match` checks each one against `FEATURE_NAMES`.
pub(crate) const F_UNIQUE_MACHINES: usize = 0;
pub(crate) const F_ADD_EVENTS: usize = 1;
pub(crate) const F_REMOVE_EVENTS: usize = 2;
pub(crate) const F_UPDATE_EVENTS: usize = 3;
pub(crate) const F_AVG_CPU: usize = 4;
pub(crate) const F_AVG_MEMORY: usize = 5;
pub(crate) const F_STD_CPU: usize = 6;
pub(crate) const F_STD_MEMORY: usize = 7;
pub(crate) const F_MIN_CPU: usize = 8;
pub(crate) const F_MAX_CPU: usize = 9;
pub(crate) const F_MIN_MEMORY: usize = 10;
pub(crate) const F_MAX_MEMORY: usize = 11;
pub(crate) const F_UNIQUE_SWITCHES: usize = 12;
pub(crate) const F_UNIQUE_PLATFORMS: usize = 13;
pub(crate) const F_HOUR_OF_DAY: usize = 14;
pub(crate) const F_DAY_OF_WEEK: usize = 15;
pub(crate) const F_DAY_OF_MONTH: usize = 16;
pub(crate) const F_HOUR_SIN: usize = 17;
pub(crate) const F_HOUR_COS: usize = 18;
pub(crate) const F_DAY_SIN: usize = 19;
pub(crate) const F_DAY_COS: usize = 20;
pub(crate) const F_LAG1_EVENTS: usize = 21;
pub(crate) const F_LAG1_MACHINES: usize = 22;
pub(crate) const F_LAG1_CPU: usize = 23;
pub(crate) const F_LAG2_EVENTS: usize = 24;
pub(crate) const F_LAG2_MACHINES: usize = 25;
pub(crate) const F_LAG2_CPU: usize = 26;
pub(crate) const F_LAG3_EVENTS: usize = 27;
pub(crate) const F_LAG3_MACHINES: usize = 28;
pub(crate) const F_LAG3_CPU: usize = 29;
pub(crate) const F_LAG6_EVENTS: usize = 30;
pub(crate) const F_LAG6_MACHINES: usize = 31;
pub(crate) const F_LAG6_CPU: usize = 32;
pub(crate) const F_LAG12_EVENTS: usize = 33;
pub(crate) const F_LAG12_MACHINES: usize = 34;
pub(crate) const F_LAG12_CPU: usize = 35;
pub(crate) const F_LAG24_EVENTS: usize = 36;
pub(crate) const F_LAG24_MACHINES: usize = 37;
pub(crate) const F_LAG24_CPU: usize = 38;
pub(crate) const F_MA3_EVENTS: usize = 39;
pub(crate) const F_MA3_MACHINES: usize = 40;
pub(crate) const F_MA3_CPU: usize = 41;
pub(crate) const F_MA6_EVENTS: usize = 42;
pub(crate) const F_MA6_MACHINES: usize = 43;
pub(crate) const F_MA6_CPU: usize = 44;
pub(crate) const F_MA12_EVENTS: usize = 45;
pub(crate) const F_MA12_MACHINES: usize = 46;
pub(crate) const F_MA12_CPU: usize = 47;
pub(crate) const F_MA24_EVENTS: usize = 48;
pub(crate) const F_MA24_MACHINES: usize = 49;
pub(crate) const F_MA24_CPU: usize = 50;
pub(crate) const F_MA48_EVENTS: usize = 51;
pub(crate) const F_MA48_MACHINES: usize = 52;
pub(crate) const F_MA48_CPU: usize = 53;
pub(crate) const F_ROLL12_STD: usize = 54;
pub(crate) const F_ROLL12_MAX: usize = 55;
pub(crate) const F_ROLL12_MIN: usize = 56;
pub(crate) const F_ROLL24_STD: usize = 57;
pub(crate) const F_ROLL24_MAX: usize = 58;
pub(crate) const F_ROLL24_MIN: usize = 59;
pub(crate) const F_PCT_CHANGE_1H: usize = 60;
pub(crate) const F_PCT_CHANGE_6H: usize = 61;
pub(crate) const F_PCT_CHANGE_24H: usize = 62;
pub(crate) const F_DIFF_1H: usize = 63;
pub(crate) const F_DIFF_6H: usize = 64;
pub(crate) const F_DIFF_24H: usize = 65;
pub(crate) const F_CPU_MEMORY_RATIO: usize = 66;
pub(crate) const F_RESOURCE_TOTAL: usize = 67;
pub(crate) const F_RESOURCE_EFFICIENCY: usize = 68;
pub(crate) const F_EVENTS_PER_MACHINE: usize = 69;
pub(crate) const F_EVENTS_QUANTILE: usize = 70;
pub(crate) const F_CPU_QUANTILE: usize = 71;
pub(crate) const F_MEMORY_QUANTILE: usize = 72;
pub(crate) const F_IS_HIGH_LOAD: usize = 73;
pub(crate) const F_IS_LOW_LOAD: usize = 74;
pub(crate) const F_LOAD_CATEGORY: usize = 75;
pub(crate) const F_IS_BUSINESS_HOUR: usize = 76;
pub(crate) const F_IS_WEEKEND: usize = 77;
pub(crate) const F_IS_NIGHT: usize = 78;
pub(crate) const F_CPU_EVENTS_INTERACTION: usize = 79;
pub(crate) const F_MACHINES_EVENTS_RATIO: usize = 80;
pub(crate) const F_SWITCHES_COMPLEXITY: usize = 81;
