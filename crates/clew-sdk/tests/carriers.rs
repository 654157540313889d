//! Propagation carriers: HTTP headers, the JSON message envelope and the TCP frame.
//! Each round-trips a context, and a malformed or absent one starts a new trace.

mod support;

use clew_propagation::Baggage;
use clew_sdk::propagation::{extract_headers, inject_headers};
use clew_sdk::{Context, Envelope, EnvelopeError, Frame, FrameError, SpanContext, Tracer};
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use support::{Pipeline, by_name};

const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn sent_context() -> Context {
    let span = SpanContext::remote(
        "0af7651916cd43dd8448eb211c80319c".parse().unwrap(),
        "b7ad6b7169203331".parse().unwrap(),
        1,
        Some("congo=t61rcWkgMzE".parse().unwrap()),
    );
    let mut baggage = Baggage::new();
    baggage.set("ops_team", "fpv-ops-alpha").unwrap();
    Context::from_span_context(span).with_baggage(baggage)
}

fn assert_same(received: &Context, sent: &Context) {
    let (r, s) = (
        received.span_context().unwrap(),
        sent.span_context().unwrap(),
    );
    assert_eq!(r.trace_id(), s.trace_id());
    assert_eq!(r.span_id(), s.span_id());
    assert_eq!(r.flags(), s.flags());
    assert!(r.is_remote());
    assert_eq!(
        r.trace_state().map(|t| t.to_string()),
        Some("congo=t61rcWkgMzE".into())
    );
    assert_eq!(
        received.baggage().and_then(|b| b.get("ops_team")),
        Some("fpv-ops-alpha")
    );
}

/// A context that carries no span makes the receiver's span a root of a new trace.
fn assert_new_trace(received: &Context) {
    assert!(received.span_context().is_none(), "{received:?}");
    let pipeline = Pipeline::new();
    let tracer = pipeline.provider.tracer("receiver");
    tracer.span("handle").parent_context(received).start().end();
    let spans = pipeline.flush();
    let span = by_name(&spans, "handle");
    assert_eq!(span.parent_span_id, None);
    assert_ne!(
        span.trace_id.to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
}

#[test]
fn http_headers_round_trip() {
    let sent = sent_context();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    inject_headers(&sent, &mut headers);
    assert_eq!(headers["traceparent"], PARENT);
    assert_eq!(headers["tracestate"], "congo=t61rcWkgMzE");
    assert_eq!(headers["baggage"], "ops_team=fpv-ops-alpha");
    assert_same(&extract_headers(&headers), &sent);

    // Injecting again replaces rather than repeats.
    inject_headers(&sent, &mut headers);
    assert_eq!(headers.get_all("traceparent").iter().count(), 1);

    // Header names are case-insensitive on the wire; HeaderMap normalises them.
    let mut upper = HeaderMap::new();
    upper.insert(
        http::HeaderName::from_bytes(b"TraceParent").unwrap(),
        HeaderValue::from_static(PARENT),
    );
    assert!(extract_headers(&upper).span_context().is_some());
}

#[test]
fn http_headers_malformed_start_a_new_trace() {
    for bad in [
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "garbage",
    ] {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_str(bad).unwrap());
        headers.insert("baggage", HeaderValue::from_static("k=v"));
        let cx = extract_headers(&headers);
        assert_new_trace(&cx);
        assert_eq!(
            cx.baggage().and_then(|b| b.get("k")),
            Some("v"),
            "baggage survives"
        );
    }
    // Two traceparents are invalid, even if both are well formed.
    let mut twice = HeaderMap::new();
    twice.append("traceparent", HeaderValue::from_static(PARENT));
    twice.append("traceparent", HeaderValue::from_static(PARENT));
    assert_new_trace(&extract_headers(&twice));
    // Not visible ASCII: ignored.
    let mut binary = HeaderMap::new();
    binary.insert("traceparent", HeaderValue::from_bytes(b"00-\xff").unwrap());
    assert_new_trace(&extract_headers(&binary));
    assert_new_trace(&extract_headers(&HeaderMap::new()));
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct LockRequest {
    interceptor: String,
    target: String,
    payload: u32,
}

#[test]
fn envelope_round_trip_keeps_the_body_as_sent() {
    let sent = sent_context();
    let body = LockRequest {
        interceptor: "striker".into(),
        target: "orlan".into(),
        payload: 7,
    };
    let mut envelope = Envelope::new(&body).unwrap();
    envelope.inject(&sent);
    envelope.message_id = Some("m-1".into());
    let bytes = envelope.to_vec();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"traceparent":"{PARENT}","tracestate":"congo=t61rcWkgMzE","baggage":"ops_team=fpv-ops-alpha","message_id":"m-1","payload":{{"interceptor":"striker","target":"orlan","payload":7}}}}"#
        )
    );
    let received = Envelope::decode(&bytes).unwrap();
    assert_same(&received.context(), &sent);
    assert_eq!(received.payload::<LockRequest>().unwrap(), body);
    assert_eq!(received.message_id.as_deref(), Some("m-1"));

    // The raw body is preserved byte for byte, whitespace and key order included.
    let raw = br#"{"payload": { "z" : 1, "a" : [1, 2.50] }, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#;
    let received = Envelope::decode(raw).unwrap();
    assert_eq!(received.payload_json(), r#"{ "z" : 1, "a" : [1, 2.50] }"#);
    assert!(received.context().span_context().is_some());

    // Any JSON value is a body: a string, an array, null.
    for body in [
        serde_json::json!("text"),
        serde_json::json!([1, 2]),
        serde_json::Value::Null,
    ] {
        let bytes = Envelope::new(&body).unwrap().with_context(&sent).to_vec();
        let back = Envelope::decode(&bytes).unwrap();
        assert_eq!(back.payload::<serde_json::Value>().unwrap(), body);
    }
}

#[test]
fn envelope_malformed_inputs() {
    // A malformed or non-string traceparent: the body still arrives, in a new trace.
    for raw in [
        r#"{"traceparent":"00-nope","payload":{"a":1}}"#,
        r#"{"traceparent":42,"payload":{"a":1}}"#,
        r#"{"traceparent":null,"tracestate":"x=1","payload":{"a":1}}"#,
        r#"{"payload":{"a":1}}"#,
    ] {
        let envelope = Envelope::decode(raw.as_bytes()).unwrap();
        assert_new_trace(&envelope.context());
        assert_eq!(
            envelope.payload::<serde_json::Value>().unwrap(),
            serde_json::json!({"a": 1})
        );
    }
    // JSON that is not an envelope: strict decoding says so; lenient decoding takes it
    // whole as the body, without context.
    for raw in [
        r#"{"a":1}"#,
        r#"{"payload":1,"extra":2}"#,
        r#"[1,2]"#,
        r#""just a string""#,
    ] {
        assert!(
            matches!(
                Envelope::decode(raw.as_bytes()),
                Err(EnvelopeError::NotAnEnvelope)
            ),
            "{raw}"
        );
        let lenient = Envelope::decode_lenient(raw.as_bytes()).unwrap();
        assert_eq!(lenient.payload_json(), raw);
        assert_new_trace(&lenient.context());
    }
    for raw in ["", "{", "not json", "{\"payload\":}"] {
        assert!(
            matches!(
                Envelope::decode(raw.as_bytes()),
                Err(EnvelopeError::NotJson(_))
            ),
            "{raw:?}"
        );
        assert!(Envelope::decode_lenient(raw.as_bytes()).is_err());
    }
    // A body of the wrong shape is a clear error, not a panic.
    let envelope = Envelope::decode(br#"{"payload":{"target":5}}"#).unwrap();
    assert!(matches!(
        envelope.payload::<LockRequest>(),
        Err(EnvelopeError::Body(_))
    ));
}

#[test]
fn frame_round_trip() {
    let sent = sent_context();
    let frame = Frame::new(b"Authorize strike on orlan".to_vec())
        .with_header("method", "pray")
        .with_context(&sent);
    let bytes = frame.encode().unwrap();
    let header_len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[4..4 + header_len]).unwrap();
    assert_eq!(header["traceparent"], PARENT);
    assert_eq!(header["method"], "pray");

    let (back, used) = Frame::decode(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(back, frame);
    assert_same(&back.context(), &sent);

    // Two frames back to back, then each prefix of a frame is incomplete.
    let mut two = bytes.clone();
    two.extend_from_slice(&Frame::new(Vec::new()).encode().unwrap());
    let (_, first) = Frame::decode(&two).unwrap();
    let (empty, second) = Frame::decode(&two[first..]).unwrap();
    assert_eq!(first + second, two.len());
    assert!(empty.payload.is_empty() && empty.headers.is_empty());
    for cut in 0..bytes.len() {
        assert!(
            matches!(
                Frame::decode(&bytes[..cut]),
                Err(FrameError::Incomplete { .. })
            ),
            "{cut}"
        );
    }
}

#[test]
fn frame_malformed_inputs() {
    fn frame(header: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(header);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
    // A bad traceparent in a good frame: a new trace, the payload intact.
    let (f, _) = Frame::decode(&frame(br#"{"traceparent":"00-zz"}"#, b"x")).unwrap();
    assert_new_trace(&f.context());
    assert_eq!(f.payload, b"x");
    let (f, _) = Frame::decode(&frame(b"{}", b"")).unwrap();
    assert_new_trace(&f.context());
    // A header that is not a JSON object of strings breaks the frame.
    for header in [&b"nope"[..], br#"{"traceparent":1}"#, b"[]", b""] {
        assert!(matches!(
            Frame::decode(&frame(header, b"")),
            Err(FrameError::BadHeader(_))
        ));
    }
    // Lengths beyond the limits are refused before anything is allocated.
    let huge = u32::MAX.to_be_bytes();
    assert!(matches!(
        Frame::decode(&huge),
        Err(FrameError::HeaderTooLarge { .. })
    ));
    let mut big_payload = frame(b"{}", b"");
    let at = big_payload.len() - 4;
    big_payload[at..].copy_from_slice(&(64u32 << 20).to_be_bytes());
    assert!(matches!(
        Frame::decode(&big_payload),
        Err(FrameError::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        Frame::decode_limited(&frame(b"{}", b"12345"), 4),
        Err(FrameError::PayloadTooLarge { len: 5, max: 4 })
    ));
}

#[tokio::test]
async fn frame_over_a_stream() {
    let sent = sent_context();
    let (mut client, mut server) = tokio::io::duplex(64);
    let frame = Frame::new(vec![7u8; 1000]).with_context(&sent);
    let writer = {
        let frame = frame.clone();
        tokio::spawn(async move {
            frame.write_to(&mut client).await.unwrap();
            frame.write_to(&mut client).await.unwrap();
            // Half a frame, then the connection closes.
            use tokio::io::AsyncWriteExt;
            client
                .write_all(&frame.encode().unwrap()[..10])
                .await
                .unwrap();
        })
    };
    for _ in 0..2 {
        let got = Frame::read_from(&mut server).await.unwrap().unwrap();
        assert_eq!(got, frame);
        assert_same(&got.context(), &sent);
    }
    writer.await.unwrap();
    assert!(matches!(
        Frame::read_from(&mut server).await,
        Err(FrameError::Truncated)
    ));
    let (client, mut server) = tokio::io::duplex(64);
    drop(client);
    assert!(
        Frame::read_from(&mut server).await.unwrap().is_none(),
        "clean close"
    );
}

#[test]
fn a_context_without_a_span_injects_only_baggage() {
    let mut baggage = Baggage::new();
    baggage.set("k", "v").unwrap();
    let cx = Context::new().with_baggage(baggage);
    let mut headers = HeaderMap::new();
    inject_headers(&cx, &mut headers);
    assert!(headers.get("traceparent").is_none());
    assert_eq!(headers["baggage"], "k=v");
    let mut frame = Frame::new(Vec::new());
    frame.inject(&Context::new());
    assert!(frame.headers.is_empty());

    // A span of a noop tracer still propagates (not sampled).
    let span = Tracer::noop().span("x").start();
    let mut headers = HeaderMap::new();
    inject_headers(&span.context(), &mut headers);
    assert!(
        headers["traceparent"].to_str().unwrap().ends_with("-02"),
        "random, not sampled"
    );
}
