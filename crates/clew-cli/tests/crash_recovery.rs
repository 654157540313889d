//! A span acknowledged to a client survives `kill -9` of the server.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clew_model::{KeyValue, Resource, Span, SpanId, SpanKind, TraceId};
use prost::Message;
use support::{Clew, get_json};

const SPANS_PER_REQUEST: usize = 40;
const SENDERS: usize = 4;

fn request_for(trace_id: TraceId) -> Vec<u8> {
    let resource = Arc::new(Resource::for_service("crash-test"));
    let root = SpanId::generate();
    // Recent times: the restarted server's retention would rightly purge old ones.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans: Vec<Span> = (0..SPANS_PER_REQUEST)
        .map(|i| Span {
            trace_id,
            span_id: if i == 0 { root } else { SpanId::generate() },
            parent_span_id: (i > 0).then_some(root),
            trace_state: String::new(),
            name: format!("step-{i}"),
            kind: SpanKind::Internal,
            start_unix_nano: start + i as u64,
            end_unix_nano: start + 1_000 + i as u64,
            attributes: vec![KeyValue::new("i", i as i64)],
            events: vec![],
            links: vec![],
            status: Default::default(),
            resource: Arc::clone(&resource),
            scope: Default::default(),
            flags: 1,
        })
        .collect();
    clew_otlp::to_request(&spans).encode_to_vec()
}

#[test]
fn acknowledged_spans_survive_kill_dash_nine() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start(dir.path());
    let url = format!("http://{}/v1/traces", clew.otlp_http);
    let acknowledged = Arc::new(Mutex::new(Vec::<TraceId>::new()));
    let stop = Arc::new(AtomicBool::new(false));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (url, acknowledged, stop) =
                (url.clone(), Arc::clone(&acknowledged), Arc::clone(&stop));
            runtime.spawn(async move {
                let http = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let trace_id = TraceId::generate();
                    let sent = http
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(request_for(trace_id))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status().is_success() => {
                            acknowledged.lock().unwrap().push(trace_id)
                        }
                        Ok(response) if response.status().as_u16() == 429 => {
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        // The server is gone: whatever was in flight was never acknowledged.
                        _ => break,
                    }
                }
            })
        })
        .collect();

    // Kill in the middle of steady ingestion, once a good number of requests were acknowledged.
    let waited = support::eventually(Duration::from_secs(60), || {
        (acknowledged.lock().unwrap().len() >= 300).then_some(())
    });
    assert!(
        waited.is_some(),
        "ingestion too slow to reach 300 acknowledged requests in 60 s"
    );
    clew.kill_hard();
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for sender in senders {
            let _ = sender.await;
        }
    });

    let acknowledged = acknowledged.lock().unwrap().clone();
    let acknowledged_spans = acknowledged.len() * SPANS_PER_REQUEST;
    let clew = Clew::start(dir.path());
    let mut found_spans = 0;
    let mut missing = Vec::new();
    for trace_id in &acknowledged {
        let (status, body) = get_json(&clew.api(&format!("/api/clew/traces/{trace_id}")));
        let count = body["spans"].as_array().map(Vec::len).unwrap_or(0);
        found_spans += count;
        if status != 200 || count != SPANS_PER_REQUEST {
            missing.push((trace_id.to_string(), count));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged traces incomplete after kill -9, e.g. {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(found_spans, acknowledged_spans);
}
