//! Integration tests of the InfluxDB store against a real `influxd` (Debian's influxdb 1.6),
//! started once per test binary by `scripts/services/influxdb.sh` on free ports with a temp
//! dir (see [`server`]); the authentication test starts a second server with auth enabled.
//! Set `KB_INFLUX_URL` to use a server that is already running instead (without auth).
//! Every test uses a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;
mod errors;
mod server;
mod store;
mod tls;
mod v2;
mod week;
