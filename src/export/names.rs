//! Metric names, in one place so the README, dashboards and alert rules can
//! be checked against them.

pub const REQUESTS_TOTAL: &str = "chainpulse_requests_total";
pub const REQUEST_DURATION: &str = "chainpulse_request_duration_seconds";
pub const RUNS_TOTAL: &str = "chainpulse_runs_total";
pub const RUN_DURATION: &str = "chainpulse_run_duration_seconds";
pub const LLM_CALLS_TOTAL: &str = "chainpulse_llm_calls_total";
pub const LLM_DURATION: &str = "chainpulse_llm_duration_seconds";
pub const LLM_TTFT: &str = "chainpulse_llm_time_to_first_token_seconds";
pub const LLM_TOKENS_TOTAL: &str = "chainpulse_llm_tokens_total";
pub const ERRORS_TOTAL: &str = "chainpulse_errors_total";

pub const LLM_COST_TOTAL: &str = "chainpulse_llm_cost_usd_total";
pub const REQUEST_COST: &str = "chainpulse_request_cost_usd";
pub const LLM_UNPRICED: &str = "chainpulse_llm_unpriced_calls_total";
pub const LLM_USAGE_MISSING: &str = "chainpulse_llm_usage_missing_total";
pub const CACHE_LOOKUPS: &str = "chainpulse_cache_lookups_total";
pub const SLO_TARGET: &str = "chainpulse_slo_target";
pub const BUDGET_USD: &str = "chainpulse_budget_usd";

pub const SPANS_RECEIVED: &str = "chainpulse_spans_received_total";
pub const SPANS_REJECTED: &str = "chainpulse_spans_rejected_total";
pub const REQUESTS_REJECTED: &str = "chainpulse_otlp_requests_rejected_total";
pub const EXPORT_REQUESTS: &str = "chainpulse_otlp_requests_total";
pub const ASSEMBLY_TRACES: &str = "chainpulse_assembly_traces";
pub const ASSEMBLY_SPANS: &str = "chainpulse_assembly_spans";
pub const ASSEMBLY_EVICTIONS: &str = "chainpulse_assembly_evictions_total";
pub const ASSEMBLY_INFERRED_ROOTS: &str = "chainpulse_assembly_inferred_roots_total";
pub const ASSEMBLY_LATE_SPANS: &str = "chainpulse_assembly_late_spans_total";
pub const ASSEMBLY_ORPHANS_ADOPTED: &str = "chainpulse_assembly_orphans_adopted_total";
pub const CARDINALITY_SERIES: &str = "chainpulse_cardinality_series";
pub const CARDINALITY_LIMIT: &str = "chainpulse_cardinality_limit";
pub const LABEL_VALUES_TRUNCATED: &str = "chainpulse_label_values_truncated_total";
pub const INFLIGHT_BYTES: &str = "chainpulse_inflight_bytes";
pub const INFLIGHT_BYTES_LIMIT: &str = "chainpulse_inflight_bytes_limit";
pub const CONNECTIONS: &str = "chainpulse_connections";
pub const CONNECTIONS_REFUSED: &str = "chainpulse_connections_refused_total";
pub const CONNECTIONS_IDLE_CLOSED: &str = "chainpulse_connections_idle_closed_total";
pub const CARDINALITY_OVERFLOW: &str = "chainpulse_cardinality_overflow_total";
pub const INFLIGHT_REQUESTS: &str = "chainpulse_inflight_export_requests";
pub const FORWARD_SPANS: &str = "chainpulse_forward_spans_total";
pub const FORWARD_BATCHES: &str = "chainpulse_forward_batches_total";
pub const FORWARD_FAILED: &str = "chainpulse_forward_failed_spans_total";
pub const FORWARD_QUEUE_SPANS: &str = "chainpulse_forward_queue_spans";
pub const FORWARD_QUEUE_BYTES: &str = "chainpulse_forward_queue_bytes";
pub const FORWARD_QUEUE_MAX_BYTES: &str = "chainpulse_forward_queue_max_bytes";
pub const FORWARD_OLDEST_AGE: &str = "chainpulse_forward_oldest_age_seconds";
pub const FORWARD_SEND_DURATION: &str = "chainpulse_forward_send_duration_seconds";
pub const FORWARD_WAL_CORRUPT: &str = "chainpulse_forward_wal_corrupt_tails_total";
pub const FORWARD_REDACTIONS: &str = "chainpulse_forward_redactions_total";
pub const FORWARD_TRUNCATIONS: &str = "chainpulse_forward_truncated_values_total";
pub const FORWARD_QUEUE_LOST_RECORDS: &str = "chainpulse_forward_queue_lost_records_total";
pub const FORWARD_QUEUE_LOST_BYTES: &str = "chainpulse_forward_queue_lost_bytes_total";
pub const FORWARD_DESTINATION_UP: &str = "chainpulse_forward_destination_up";
pub const FORWARD_DESTINATION_DISABLED: &str = "chainpulse_forward_destination_disabled";
pub const SAMPLING_DECISIONS: &str = "chainpulse_sampling_decisions_total";
pub const BUILD_INFO: &str = "chainpulse_build_info";
pub const PROCESS_RSS: &str = "process_resident_memory_bytes";
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";

/// Label value standing in for every label of a series folded by the
/// cardinality guard.
pub const OVERFLOW_LABEL: &str = "__overflow__";

/// Latency buckets (seconds): LLM calls take 0.1 s to minutes; 1, 2 and 3 s
/// (the P50 / P95 / P99 targets) are bucket edges so `histogram_quantile`
/// is exact at the thresholds that matter.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Request cost buckets (USD): a tenth of a cent to ten dollars per request.
pub const COST_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 10.0,
];

// Listener security (src/tls.rs, src/auth.rs, src/listen.rs).
pub const TLS_RELOADS: &str = "chainpulse_tls_reload_total";
pub const TLS_HANDSHAKE_FAILURES: &str = "chainpulse_tls_handshake_failures_total";
pub const AUTH_REFUSED: &str = "chainpulse_auth_refused_total";
pub const AUTH_TOKEN_RELOADS: &str = "chainpulse_auth_token_reload_total";
pub const CONNECTIONS_HEADER_TIMEOUT: &str = "chainpulse_connections_header_timeout_total";
pub const CONNECTIONS_REFUSED_ANSWERED: &str = "chainpulse_connections_refused_answered_total";
