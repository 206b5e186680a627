//! The schema: table definitions, the DDL for single-server and cluster mode, and the
//! forward-only migrations recorded in `schema_version`.
//!
//! Every statement is `CREATE ... IF NOT EXISTS`, so a migration interrupted half-way simply
//! runs again; the version row is inserted after its statements. Only SQL that ClickHouse 18.16
//! and current versions both accept is used: `DateTime('UTC')`, `String`, `Float64`, integer
//! types, `MergeTree()` / `ReplacingMergeTree(v)` with `PARTITION BY toYYYYMM(...)` and
//! `ORDER BY (...)`, views, no TTL, no codecs, no `LowCardinality`.
//!
//! Version 1 is the window store (allocations, assets, checkpoints, the small lists);
//! version 2 adds the aggregator's results (`summaries`, `anomalies`, `forecasts`, their
//! commit rows in `insight_commits`) and the mirror's `mirror_marks`; version 3 adds the
//! bridge's recommendations (`recommendations`, a replaced list with its run row). A database
//! at an older version gets only the newer tables.

use crate::insights::{anomaly_cols, forecast_cols, recommendation_cols, summary_cols};
use crate::rows::{
    ALLOCATION_COLS, ASSET_COLS, budget_cols, column_ddl, prediction_cost_columns,
    prediction_head_cols, savings_cols,
};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 3;

/// The MergeTree flavour of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    MergeTree,
    /// `ReplacingMergeTree(column)`: rows with the same sorting key collapse to the one with
    /// the largest `column` (reads still pick the winner with `argMax`, never rely on merges).
    Replacing(&'static str),
}

/// One table of the schema.
#[derive(Debug, Clone)]
pub(crate) struct TableDef {
    pub(crate) name: &'static str,
    pub(crate) columns: Vec<(String, String)>,
    pub(crate) engine: Engine,
    pub(crate) partition_by: Option<&'static str>,
    pub(crate) order_by: &'static str,
    /// Sharding expression of the Distributed table in cluster mode.
    pub(crate) shard_by: &'static str,
    /// The schema version that creates the table.
    pub(crate) since: u32,
}

fn cols(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
        .collect()
}

/// Every table of the schema, in creation order (`since` says which migration creates it).
pub(crate) fn tables() -> Vec<TableDef> {
    let mut prediction_columns = cols(&column_ddl(&prediction_head_cols()));
    prediction_columns.extend(
        prediction_cost_columns()
            .into_iter()
            .map(|c| (c, "Float64".to_string())),
    );
    vec![
        TableDef {
            name: "schema_version",
            columns: cols(&[("version", "UInt32"), ("applied_at", "DateTime('UTC')")]),
            engine: Engine::MergeTree,
            partition_by: None,
            order_by: "version",
            shard_by: "version",
            since: 1,
        },
        TableDef {
            name: "allocations",
            columns: cols(&column_ddl(ALLOCATION_COLS)),
            engine: Engine::MergeTree,
            partition_by: Some("toYYYYMM(window_start)"),
            order_by: "window_start, cluster, namespace, controller, pod",
            shard_by: "cityHash64(cluster)",
            since: 1,
        },
        TableDef {
            name: "cost_summaries",
            columns: cols(&[
                ("timestamp", "DateTime('UTC')"),
                ("cluster", "String"),
                ("namespace", "String"),
                ("window_duration", "String"),
                ("total_cost", "Float64"),
                ("cpu_cost", "Float64"),
                ("memory_cost", "Float64"),
                ("network_cost", "Float64"),
                ("storage_cost", "Float64"),
                ("efficiency_score", "Float64"),
                ("gpu_cost", "Float64"),
                ("load_balancer_cost", "Float64"),
                ("shared_cost", "Float64"),
                ("external_cost", "Float64"),
                ("idle_cost", "Float64"),
                ("rows", "UInt64"),
                ("slot", "Int64"),
                ("version", "UInt64"),
            ]),
            engine: Engine::MergeTree,
            partition_by: Some("toYYYYMM(timestamp)"),
            order_by: "timestamp, cluster, namespace",
            shard_by: "cityHash64(cluster)",
            since: 1,
        },
        TableDef {
            name: "assets",
            columns: cols(&column_ddl(ASSET_COLS)),
            engine: Engine::MergeTree,
            partition_by: Some("toYYYYMM(window_start)"),
            order_by: "window_start, cluster, asset_type, asset_key",
            shard_by: "cityHash64(cluster)",
            since: 1,
        },
        TableDef {
            name: "sync_state",
            columns: cols(&[
                ("cluster", "String"),
                ("endpoint", "String"),
                ("slot", "Int64"),
                ("window_start", "Int64"),
                ("window_end", "Int64"),
                ("resolution", "String"),
                ("synced_at", "Int64"),
                ("rows", "UInt64"),
                ("response_total_cost", "Float64"),
                ("null_fields", "UInt64"),
                ("row_version", "UInt64"),
                ("commit_version", "UInt64"),
            ]),
            engine: Engine::Replacing("commit_version"),
            partition_by: None,
            order_by: "cluster, endpoint, slot",
            shard_by: "cityHash64(cluster)",
            since: 1,
        },
        TableDef {
            name: "snapshots",
            columns: cols(&[
                ("cluster", "String"),
                ("kind", "String"),
                ("version", "UInt64"),
                ("fetched_at", "Int64"),
                ("rows", "UInt64"),
            ]),
            engine: Engine::Replacing("version"),
            partition_by: None,
            order_by: "cluster, kind",
            shard_by: "cityHash64(cluster)",
            since: 1,
        },
        TableDef {
            name: "budgets",
            columns: cols(&column_ddl(&budget_cols())),
            engine: Engine::MergeTree,
            partition_by: None,
            order_by: "cluster, version, seq",
            shard_by: "cityHash64(cluster)",
            since: 1,
        },
        TableDef {
            name: "savings",
            columns: cols(&column_ddl(&savings_cols())),
            engine: Engine::MergeTree,
            partition_by: None,
            order_by: "cluster, version, seq",
            shard_by: "cityHash64(cluster)",
            since: 1,
        },
        TableDef {
            name: "predictions",
            columns: prediction_columns,
            engine: Engine::MergeTree,
            partition_by: None,
            order_by: "cluster, version, seq",
            shard_by: "cityHash64(cluster)",
            since: 1,
        },
        TableDef {
            name: "reconciliations",
            columns: cols(&[
                ("cluster", "String"),
                ("endpoint", "String"),
                ("window_start", "Int64"),
                ("window_end", "Int64"),
                ("expected", "Float64"),
                ("stored", "Float64"),
                ("relative_error", "Float64"),
                ("checked_at", "Int64"),
                ("version", "UInt64"),
            ]),
            engine: Engine::Replacing("version"),
            partition_by: None,
            order_by: "cluster, endpoint, window_start, window_end",
            shard_by: "cityHash64(cluster)",
            since: 1,
        },
        // Version 2: the aggregator's results (see `crate::insights`).
        TableDef {
            name: "summaries",
            columns: cols(&column_ddl(&summary_cols())),
            engine: Engine::MergeTree,
            partition_by: Some("toYYYYMM(timestamp)"),
            order_by: "cluster, granularity, dimension, bucket_start, namespace, name",
            shard_by: "cityHash64(cluster)",
            since: 2,
        },
        TableDef {
            name: "anomalies",
            columns: cols(&column_ddl(&anomaly_cols())),
            engine: Engine::MergeTree,
            partition_by: None,
            order_by: "cluster, start",
            shard_by: "cityHash64(cluster)",
            since: 2,
        },
        TableDef {
            name: "forecasts",
            columns: cols(&column_ddl(&forecast_cols())),
            engine: Engine::MergeTree,
            partition_by: None,
            order_by: "cluster, version, seq",
            shard_by: "cityHash64(cluster)",
            since: 2,
        },
        TableDef {
            name: "insight_commits",
            columns: cols(&[
                ("cluster", "String"),
                ("kind", "String"),
                ("granularity", "String"),
                ("source", "String"),
                ("slot", "Int64"),
                ("row_version", "UInt64"),
                ("commit_version", "UInt64"),
            ]),
            engine: Engine::Replacing("commit_version"),
            partition_by: None,
            order_by: "cluster, kind, granularity, source, slot",
            shard_by: "cityHash64(cluster)",
            since: 2,
        },
        TableDef {
            name: "mirror_marks",
            columns: cols(&[
                ("cluster", "String"),
                ("kind", "String"),
                ("unit", "Int64"),
                ("fingerprint", "UInt64"),
                ("version", "UInt64"),
            ]),
            engine: Engine::Replacing("version"),
            partition_by: None,
            order_by: "cluster, kind, unit",
            shard_by: "cityHash64(cluster)",
            since: 2,
        },
        // Version 3: the bridge's recommendations (see `crate::insights`).
        TableDef {
            name: "recommendations",
            columns: cols(&column_ddl(&recommendation_cols())),
            engine: Engine::MergeTree,
            partition_by: None,
            order_by: "cluster, version, seq",
            shard_by: "cityHash64(cluster)",
            since: 3,
        },
    ]
}

/// Single server, or a ClickHouse cluster (`remote_servers`) with replicated local tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) database: String,
    pub(crate) cluster: Option<String>,
}

impl Layout {
    /// `ON CLUSTER `name`` or nothing.
    fn on_cluster(&self) -> String {
        match &self.cluster {
            Some(c) => format!(" ON CLUSTER `{c}`"),
            None => String::new(),
        }
    }

    /// The table reads and inserts go to (the Distributed table in cluster mode).
    pub(crate) fn table(&self, name: &str) -> String {
        format!("`{}`.{name}", self.database)
    }

    /// The table holding the data (`<name>_local` in cluster mode): the target of mutations.
    pub(crate) fn data_table(&self, name: &str) -> String {
        match &self.cluster {
            Some(_) => format!("`{}`.{name}_local", self.database),
            None => self.table(name),
        }
    }

    /// `ALTER TABLE <data table> [ON CLUSTER c] ` for a mutation.
    pub(crate) fn alter(&self, name: &str) -> String {
        format!(
            "ALTER TABLE {}{} ",
            self.data_table(name),
            self.on_cluster()
        )
    }

    /// `IN` or, in cluster mode, `GLOBAL IN` (the set is built once and sent to the shards).
    pub(crate) fn in_op(&self) -> &'static str {
        if self.cluster.is_some() {
            "GLOBAL IN"
        } else {
            "IN"
        }
    }

    pub(crate) fn create_database(&self) -> String {
        format!(
            "CREATE DATABASE IF NOT EXISTS `{}`{}",
            self.database,
            self.on_cluster()
        )
    }

    /// The statements creating one table (two in cluster mode: local, then Distributed).
    pub(crate) fn create_table(&self, t: &TableDef) -> Vec<String> {
        let columns = t
            .columns
            .iter()
            .map(|(n, ty)| format!("{n} {ty}"))
            .collect::<Vec<_>>()
            .join(", ");
        let tail = format!(
            "{}ORDER BY ({})",
            t.partition_by
                .map(|p| format!("PARTITION BY {p} "))
                .unwrap_or_default(),
            t.order_by
        );
        match &self.cluster {
            None => {
                let engine = match t.engine {
                    Engine::MergeTree => "MergeTree()".to_string(),
                    Engine::Replacing(v) => format!("ReplacingMergeTree({v})"),
                };
                vec![format!(
                    "CREATE TABLE IF NOT EXISTS {} ({columns}) ENGINE = {engine} {tail}",
                    self.table(t.name)
                )]
            }
            Some(cluster) => {
                let db = &self.database;
                let local = format!("{}_local", t.name);
                let path = format!("'/clickhouse/tables/{{shard}}/{db}/{local}', '{{replica}}'");
                let engine = match t.engine {
                    Engine::MergeTree => format!("ReplicatedMergeTree({path})"),
                    Engine::Replacing(v) => format!("ReplicatedReplacingMergeTree({path}, {v})"),
                };
                vec![
                    format!(
                        "CREATE TABLE IF NOT EXISTS `{db}`.{local} ON CLUSTER `{cluster}` \
                         ({columns}) ENGINE = {engine} {tail}"
                    ),
                    format!(
                        "CREATE TABLE IF NOT EXISTS `{db}`.{} ON CLUSTER `{cluster}` \
                         AS `{db}`.{local} ENGINE = Distributed('{cluster}', '{db}', '{local}', {})",
                        t.name, t.shard_by
                    ),
                ]
            }
        }
    }

    /// The `*_current` views: the fact tables with the visibility rule applied (see the crate
    /// docs), for ad-hoc queries that must not see superseded or uncommitted rows.
    pub(crate) fn create_views(&self) -> Vec<String> {
        [
            ("allocations", "allocation"),
            ("cost_summaries", "allocation"),
            ("assets", "assets"),
        ]
        .iter()
        .map(|(t, endpoint)| {
            format!(
                "CREATE VIEW IF NOT EXISTS {}{} AS SELECT * FROM {} WHERE (cluster, slot, version) {} \
                 (SELECT cluster, slot, argMax(row_version, commit_version) FROM {} \
                 WHERE endpoint = '{endpoint}' GROUP BY cluster, slot)",
                self.table(&format!("{t}_current")),
                self.on_cluster(),
                self.table(t),
                self.in_op(),
                self.table("sync_state"),
            )
        })
        .collect()
    }

    /// Every statement of migration `version`: the tables it creates (1: the window store,
    /// 2: the aggregator's results and the mirror's marks, 3: the bridge's recommendations),
    /// and in 1 the `*_current` views.
    pub(crate) fn migration(&self, version: u32) -> Vec<String> {
        let mut out = Vec::new();
        for t in tables()
            .iter()
            .filter(|t| t.name != "schema_version" && t.since == version)
        {
            out.extend(self.create_table(t));
        }
        if version == 1 {
            out.extend(self.create_views());
        }
        out
    }

    /// The statements run before reading the version: the database and `schema_version`.
    pub(crate) fn bootstrap(&self) -> Vec<String> {
        let mut out = vec![self.create_database()];
        if let Some(t) = tables().iter().find(|t| t.name == "schema_version") {
            out.extend(self.create_table(t));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single() -> Layout {
        Layout {
            database: "cloudtuner".into(),
            cluster: None,
        }
    }

    fn clustered() -> Layout {
        Layout {
            database: "cloudtuner".into(),
            cluster: Some("prod".into()),
        }
    }

    #[test]
    fn single_server_ddl() {
        let l = single();
        assert_eq!(
            l.create_database(),
            "CREATE DATABASE IF NOT EXISTS `cloudtuner`"
        );
        let ddl = l.migration(1);
        let summaries = ddl
            .iter()
            .find(|s| s.contains(".cost_summaries ("))
            .unwrap();
        assert!(summaries.starts_with(
            "CREATE TABLE IF NOT EXISTS `cloudtuner`.cost_summaries (timestamp DateTime('UTC'), \
             cluster String, namespace String, window_duration String, total_cost Float64, \
             cpu_cost Float64, memory_cost Float64, network_cost Float64, storage_cost Float64, \
             efficiency_score Float64, "
        ));
        assert!(summaries.ends_with(
            "ENGINE = MergeTree() PARTITION BY toYYYYMM(timestamp) \
             ORDER BY (timestamp, cluster, namespace)"
        ));
        let sync = ddl.iter().find(|s| s.contains(".sync_state (")).unwrap();
        assert!(sync.ends_with(
            "ENGINE = ReplacingMergeTree(commit_version) ORDER BY (cluster, endpoint, slot)"
        ));
        assert!(ddl.iter().all(|s| !s.contains("ON CLUSTER")));
        assert!(ddl.iter().all(|s| !s.contains("GLOBAL IN")));
        assert_eq!(
            ddl.iter().filter(|s| s.starts_with("CREATE VIEW")).count(),
            3
        );
        assert_eq!(
            l.alter("allocations"),
            "ALTER TABLE `cloudtuner`.allocations "
        );
    }

    #[test]
    fn migration_3_creates_the_recommendations_table_only() {
        assert_eq!(SCHEMA_VERSION, 3);
        let v3 = single().migration(3);
        assert_eq!(
            v3,
            vec![
                "CREATE TABLE IF NOT EXISTS `cloudtuner`.recommendations (cluster String, \
                 version UInt64, seq UInt32, fetched_at Int64, is_run UInt8, made_at Int64, \
                 window_start Int64, window_end Int64, monthly_cost Float64, kind String, \
                 namespace String, controller_kind String, controller String, target String, \
                 description String, current_monthly_cost Float64, monthly_savings Float64) \
                 ENGINE = MergeTree() ORDER BY (cluster, version, seq)"
                    .to_string()
            ]
        );
        // Every version up to this build's has a migration, and none creates a table twice.
        let mut names: Vec<&str> = tables().iter().map(|t| t.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        for v in 1..=SCHEMA_VERSION {
            assert!(!single().migration(v).is_empty(), "migration {v}");
        }
        assert!(single().migration(SCHEMA_VERSION + 1).is_empty());
        assert!(
            single()
                .migration(3)
                .iter()
                .chain(&clustered().migration(3))
                .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS "))
        );
    }

    #[test]
    fn cluster_ddl_uses_replicated_local_tables_behind_distributed_ones() {
        let l = clustered();
        assert_eq!(
            l.create_database(),
            "CREATE DATABASE IF NOT EXISTS `cloudtuner` ON CLUSTER `prod`"
        );
        let ddl = l.migration(1);
        let local = ddl
            .iter()
            .find(|s| s.contains(".allocations_local ON CLUSTER"))
            .unwrap();
        assert!(local.starts_with(
            "CREATE TABLE IF NOT EXISTS `cloudtuner`.allocations_local ON CLUSTER `prod` (cluster String, version UInt64, slot Int64, "
        ));
        assert!(local.ends_with(
            "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/cloudtuner/allocations_local', '{replica}') \
             PARTITION BY toYYYYMM(window_start) ORDER BY (window_start, cluster, namespace, controller, pod)"
        ));
        assert!(
            ddl.contains(
                &"CREATE TABLE IF NOT EXISTS `cloudtuner`.allocations ON CLUSTER `prod` \
              AS `cloudtuner`.allocations_local \
              ENGINE = Distributed('prod', 'cloudtuner', 'allocations_local', cityHash64(cluster))"
                    .to_string()
            )
        );
        let sync = ddl
            .iter()
            .find(|s| s.contains(".sync_state_local ON CLUSTER"))
            .unwrap();
        assert!(sync.contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cloudtuner/sync_state_local', '{replica}', commit_version)"
        ));
        // Every table has a local and a Distributed half; views read the Distributed tables.
        let tables = tables()
            .iter()
            .filter(|t| t.since == 1 && t.name != "schema_version")
            .count();
        assert_eq!(
            ddl.iter()
                .filter(|s| s.contains("ENGINE = Distributed("))
                .count(),
            tables
        );
        assert!(
            ddl.iter()
                .filter(|s| s.starts_with("CREATE VIEW"))
                .all(|s| s.contains("ON CLUSTER `prod`") && s.contains("GLOBAL IN"))
        );
        assert_eq!(
            l.alter("allocations"),
            "ALTER TABLE `cloudtuner`.allocations_local ON CLUSTER `prod` "
        );
        assert_eq!(l.table("allocations"), "`cloudtuner`.allocations");
        // Migration 3: the recommendations, a local and a Distributed table.
        let v3 = l.migration(3);
        assert_eq!(v3.len(), 2);
        assert!(v3[0].starts_with(
            "CREATE TABLE IF NOT EXISTS `cloudtuner`.recommendations_local ON CLUSTER `prod` \
             (cluster String, version UInt64, seq UInt32, fetched_at Int64, is_run UInt8, "
        ));
        assert!(v3[0].ends_with(
            "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/cloudtuner/recommendations_local', '{replica}') \
             ORDER BY (cluster, version, seq)"
        ));
        assert_eq!(
            v3[1],
            "CREATE TABLE IF NOT EXISTS `cloudtuner`.recommendations ON CLUSTER `prod` \
             AS `cloudtuner`.recommendations_local \
             ENGINE = Distributed('prod', 'cloudtuner', 'recommendations_local', cityHash64(cluster))"
        );
        let boot = l.bootstrap();
        assert_eq!(boot.len(), 3);
        assert!(
            boot[2].contains("Distributed('prod', 'cloudtuner', 'schema_version_local', version)")
        );
    }
}
