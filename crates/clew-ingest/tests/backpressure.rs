//! The pipeline keeps memory bounded: when the queue in front of the store is full,
//! submitters get a retryable error at once; nothing accepted is lost on shutdown.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use clew_ingest::{IngestError, Pipeline, PipelineConfig};
use clew_model::{Resource, Span, SpanId, SpanKind, TraceId};
use clew_store::{Dependency, Operation, SpanStore, TraceQuery};

/// A store whose writes wait until the test opens the gate, so the queue can be filled
/// deterministically. It keeps what it is given, to check nothing is lost.
#[derive(Default)]
struct GatedStore {
    open: Mutex<bool>,
    opened: Condvar,
    written: Mutex<Vec<Span>>,
}

impl GatedStore {
    fn open_gate(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl SpanStore for GatedStore {
    fn write(&self, spans: &[Span]) -> clew_store::Result<()> {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        self.written.lock().unwrap().extend_from_slice(spans);
        Ok(())
    }
    fn trace(&self, _: TraceId) -> clew_store::Result<Option<Vec<Span>>> {
        Ok(None)
    }
    fn find_traces(&self, _: &TraceQuery) -> clew_store::Result<Vec<TraceId>> {
        Ok(vec![])
    }
    fn services(&self) -> clew_store::Result<Vec<String>> {
        Ok(vec![])
    }
    fn operations(&self, _: &str) -> clew_store::Result<Vec<Operation>> {
        Ok(vec![])
    }
    fn dependencies(&self, _: u64, _: u64) -> clew_store::Result<Vec<Dependency>> {
        Ok(vec![])
    }
    fn purge_older_than(&self, _: u64) -> clew_store::Result<u64> {
        Ok(0)
    }
}

fn spans(count: usize) -> Vec<Span> {
    let trace_id = TraceId::generate();
    let resource = Arc::new(Resource::for_service("bp"));
    (0..count)
        .map(|_| Span {
            trace_id,
            span_id: SpanId::generate(),
            parent_span_id: None,
            trace_state: String::new(),
            name: "op".into(),
            kind: SpanKind::Internal,
            start_unix_nano: 1,
            end_unix_nano: 2,
            attributes: vec![],
            events: vec![],
            links: vec![],
            status: Default::default(),
            resource: Arc::clone(&resource),
            scope: Default::default(),
            flags: 0,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_retryably_and_recovers() {
    let store = Arc::new(GatedStore::default());
    let pipeline = Pipeline::start(
        store.clone(),
        PipelineConfig {
            max_queued_spans: 100,
            max_batch_spans: 1000,
        },
    );

    let first = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.submit(spans(60)).await }
    });
    // Wait until the first batch holds its place in the queue (its write is stuck at the gate).
    tokio::time::timeout(Duration::from_secs(5), async {
        while pipeline.queued_spans() < 60 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first batch is queued");
    match pipeline.submit(spans(60)).await {
        Err(IngestError::Overloaded { queued, .. }) => assert_eq!(queued, 60),
        other => panic!("expected overload while 60 of 100 are queued, got {other:?}"),
    }

    assert!(matches!(
        pipeline.submit(spans(101)).await,
        Err(IngestError::TooLarge {
            spans: 101,
            capacity: 100
        })
    ));

    store.open_gate();
    first
        .await
        .unwrap()
        .expect("the queued batch is stored once the store moves");
    pipeline
        .submit(spans(90))
        .await
        .expect("room again after the write");
    assert_eq!(store.written.lock().unwrap().len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stores_everything_accepted_first() {
    let store = Arc::new(GatedStore::default());
    store.open_gate();
    let pipeline = Pipeline::start(store.clone(), PipelineConfig::default());
    let submitted: Vec<_> = (0..20)
        .map(|_| {
            let pipeline = pipeline.clone();
            tokio::spawn(async move { pipeline.submit(spans(10)).await })
        })
        .collect();
    let mut acknowledged = 0;
    for handle in submitted {
        if handle.await.unwrap().is_ok() {
            acknowledged += 10;
        }
    }
    let closing = pipeline.clone();
    tokio::task::spawn_blocking(move || closing.shutdown())
        .await
        .unwrap();
    assert_eq!(store.written.lock().unwrap().len(), acknowledged);
    assert_eq!(acknowledged, 200);
    assert!(matches!(
        pipeline.submit(spans(1)).await,
        Err(IngestError::Unavailable(_))
    ));
}
