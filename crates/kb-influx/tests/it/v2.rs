//! The v2 API and the error paths that need a server misbehaving, against a small fake HTTP
//! server on loopback (Debian's InfluxDB 1.6 has no `/api/v2`): the write URL, the token
//! header, gzip bodies, the delete request, and the mapping of 401, 503, refused connections
//! and timeouts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kb_conformance::{DAY0, checkpoint, hour_at, window_rows};
use kb_core::Resolution;
use kb_influx::{InfluxClient, InfluxConfig, InfluxStore, Secret};
use kb_pipeline::ports::CostStore;

const TOKEN: &str = "tok-9f8e7d-SECRET";

#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        if self.header("content-encoding") == Some("gzip") {
            let mut out = String::new();
            flate2_decode(&self.body, &mut out);
            out
        } else {
            String::from_utf8(self.body.clone()).unwrap()
        }
    }
}

fn flate2_decode(gz: &[u8], out: &mut String) {
    flate2::read::GzDecoder::new(gz)
        .read_to_string(out)
        .unwrap();
}

/// Serves the canned `(status, body)` answers in order (the last one repeats), recording
/// every request; `delay` makes it wait before answering.
fn fake_server(
    answers: Vec<(u16, &'static str)>,
    delay: Duration,
) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let target = parts.next().unwrap_or_default().to_string();
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap();
                    }
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            log.lock().unwrap().push(Request {
                method,
                target,
                headers,
                body,
            });
            std::thread::sleep(delay);
            let (status, text) = answers[n.min(answers.len() - 1)];
            n += 1;
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            stream.write_all(resp.as_bytes()).ok();
        }
    });
    (url, seen)
}

fn v2_config(url: &str) -> InfluxConfig {
    InfluxConfig::v2(
        format!("{url}/prefix"),
        "my org",
        "costs",
        Secret::new(TOKEN),
    )
}

#[test]
fn v2_writes_send_the_token_gzip_and_precision_and_replace_windows_with_a_delete() {
    let (url, seen) = fake_server(vec![(204, "")], Duration::ZERO);
    let store = InfluxStore::open(&v2_config(&url)).unwrap();
    let c = "v2";
    let w = hour_at(DAY0, 0);
    let rows = window_rows(c, w, 1.0);
    let mut writer = store.begin_allocations(c, w, Resolution::Hour).unwrap();
    writer.write(&rows).unwrap();
    let stats = writer
        .commit(&checkpoint(c, w, Resolution::Hour, &rows))
        .unwrap();
    assert_eq!(stats.rows, rows.len() as u64);

    let reqs = seen.lock().unwrap().clone();
    // ping, delete checkpoint, delete rows, pending marker, rows, checkpoint.
    let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
    let write = "/prefix/api/v2/write?org=my+org&bucket=costs&precision=s";
    let delete = "/prefix/api/v2/delete?org=my+org&bucket=costs";
    assert_eq!(
        targets,
        vec!["/prefix/ping", delete, delete, write, write, write]
    );
    for r in &reqs[1..] {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("authorization"), Some(&*format!("Token {TOKEN}")));
    }
    let delete: serde_json::Value = serde_json::from_slice(&reqs[2].body).unwrap();
    assert_eq!(delete["start"], "2023-11-14T00:00:00Z");
    assert_eq!(delete["stop"], "2023-11-14T00:59:59Z");
    assert_eq!(
        delete["predicate"],
        "_measurement=\"cost_allocations\" AND cluster=\"v2\""
    );
    assert!(reqs[3].text().contains("state=\"pending\""));
    assert_eq!(reqs[4].header("content-encoding"), Some("gzip"));
    let lines = reqs[4].text();
    assert_eq!(lines.lines().count(), rows.len());
    assert!(lines.starts_with("cost_allocations,"), "{lines}");
    let cp = reqs[5].text();
    assert!(
        cp.starts_with("kubecost_bridge_sync,cluster=v2,endpoint=allocation "),
        "{cp}"
    );
    assert!(cp.contains("state=\"committed\""), "{cp}");
}

#[test]
fn a_refused_token_is_an_auth_error_without_the_token() {
    let body = r#"{"code":"unauthorized","message":"token tok-9f8e7d-SECRET is not valid"}"#;
    let (url, _) = fake_server(vec![(401, body)], Duration::ZERO);
    let client = InfluxClient::new(&v2_config(&url)).unwrap();
    let e = client.send(b"m a=1.0 1\n").unwrap_err();
    assert!(!e.retryable);
    let shown = format!("{e} {e:?} {:?}", client);
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(e.message.contains("authentication failed"), "{e}");
    assert!(e.message.contains("http 401"), "{e}");
}

#[test]
fn server_errors_refused_connections_and_timeouts_are_retryable() {
    let (url, _) = fake_server(
        vec![(
            503,
            r#"{"error":"engine: cache maximum memory size exceeded"}"#,
        )],
        Duration::ZERO,
    );
    let client = InfluxClient::new(&v2_config(&url)).unwrap();
    let e = client.send(b"m a=1.0 1\n").unwrap_err();
    assert!(e.retryable, "{e}");
    assert!(
        e.message.contains("cache maximum memory size exceeded"),
        "{e}"
    );

    // Nothing listens on the port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = InfluxClient::new(&InfluxConfig::v1(format!("http://127.0.0.1:{port}"))).unwrap();
    let e = client.send(b"m a=1.0 1\n").unwrap_err();
    assert!(e.retryable, "{e}");
    assert!(e.message.contains("cannot reach"), "{e}");

    // A server that answers too late.
    let (url, _) = fake_server(vec![(204, "")], Duration::from_secs(3));
    let mut cfg = InfluxConfig::v1(url);
    cfg.timeout = Duration::from_millis(300);
    let client = InfluxClient::new(&cfg).unwrap();
    let e = client.send(b"m a=1.0 1\n").unwrap_err();
    assert!(e.retryable, "{e}");
    assert!(e.message.contains("no answer within"), "{e}");
}
