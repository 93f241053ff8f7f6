//! Stalled clients are cut off: 200 connections that send half a request
//! (half the headers, or the headers and half the body) are closed by the
//! management API after its header or body read timeout, and the API keeps
//! answering other clients meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use pageserver::http_serve::{BODY_READ_TIMEOUT, HEADER_READ_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections of each kind.
const PER_KIND: usize = 100;

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(mut stream: TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_after_the_read_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    let started = Instant::now();
    let mut stalled = Vec::new();
    for i in 0..2 * PER_KIND {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let half: &[u8] = if i % 2 == 0 {
            // Headers that never end.
            b"GET /v1/status HTTP/1.1\r\nHost: pageserver\r\nAccept: appl"
        } else {
            // Complete headers, then 10 of the 100 promised body bytes.
            b"PUT /v1/disk_usage_eviction/run HTTP/1.1\r\nHost: pageserver\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"evict_by"
        };
        stream.write_all(half).await.unwrap();
        stalled.push(stream);
    }

    // The API still serves a well-behaved client while 200 connections stall.
    let (status, body) = server.call("GET", "/v1/status", None).await;
    assert_eq!(status, 200, "{body}");

    // Generous slack: CI shares two cores; without the timeouts these
    // connections stay open indefinitely, so the bound still tells.
    let bound = HEADER_READ_TIMEOUT.max(BODY_READ_TIMEOUT) * 3;
    let readers: Vec<_> = stalled
        .into_iter()
        .map(|stream| tokio::spawn(tokio::time::timeout(bound, read_to_close(stream))))
        .collect();
    let mut answered_400 = 0;
    for (i, reader) in readers.into_iter().enumerate() {
        let received = reader
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("connection {i} still open after {bound:?}"));
        let text = String::from_utf8_lossy(&received);
        if i % 2 == 0 {
            // Hyper drops a connection whose headers time out, or answers
            // 408 first; never a handler's response.
            assert!(
                received.is_empty() || text.starts_with("HTTP/1.1 408"),
                "connection {i}: {text}"
            );
        } else if text.starts_with("HTTP/1.1 400") {
            // The body read timed out inside the handler: a spec-shaped 400.
            assert!(text.contains("\"msg\""), "connection {i}: {text}");
            answered_400 += 1;
        } else {
            assert!(received.is_empty(), "connection {i}: {text}");
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{} stalled connections closed after {elapsed:?} ({answered_400} answered 400)",
        2 * PER_KIND
    );
    // Not before the timeout: the server waited for the slow clients.
    assert!(
        elapsed >= HEADER_READ_TIMEOUT.min(BODY_READ_TIMEOUT) - Duration::from_secs(1),
        "closed after only {elapsed:?}"
    );
    server.stop().await;
}
