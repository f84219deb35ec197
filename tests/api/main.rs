//! Every integration test, in one binary (one build, one link): each file is a part of the
//! product tried through its real interfaces — the HTTP API, the WebSocket, the binary, a real
//! ClickHouse (the one `scripts/test` starts for the run) — with the shared helpers in
//! `helpers.rs` (`spawn_app()` and friends).

mod helpers;

mod access;
mod alert_delivery;
mod alerts;
mod audit;
mod broker;
mod ch_cluster;
mod checkpoints;
mod cluster_script;
mod cluster_store;
mod corrections;
mod current_clickhouse;
mod dashboards;
mod definitions;
mod drill;
mod durability;
mod foundation;
mod hardening;
mod imports;
mod ingest;
mod instances;
mod layers;
mod managed_clickhouse;
mod metric_page;
mod migration;
mod one_truth;
mod plan_board;
mod regions;
mod simulator;
mod snapshots;
mod sql;
mod stream;
mod surfaces;
mod tasks;
mod unit;
mod wall_screen;
