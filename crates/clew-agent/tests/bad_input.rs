//! Bad frames get a failure reply or a logged close; the agent and every other
//! connection keep working.

mod support;

use serde_json::json;
use support::{Raw, TestAgent};

fn is_failure_mentioning(reply: &serde_json::Value, needle: &str) -> bool {
    reply["Failure"]["message"]
        .as_str()
        .is_some_and(|m| m.contains(needle))
}

async fn still_answers(connection: &mut Raw) {
    let reply = connection.request(json!({"CoreAgentVersion": {}})).await;
    assert!(reply["CoreAgentVersion"]["version"].is_string(), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoverable_mistakes_get_a_failure_and_the_connection_stays_usable() {
    let agent = TestAgent::start().await;
    for address in [agent.tcp_address(), agent.unix_address()] {
        let mut c = Raw::connect(&address).await;

        c.send_frame(b"{\"StartRequest\": {").await;
        let reply = c.read_reply().await.unwrap();
        assert!(is_failure_mentioning(&reply, "not valid JSON"), "{reply}");
        still_answers(&mut c).await;

        c.send_frame(&[0xff, 0xfe, b'{', b'}']).await;
        assert!(c.read_reply().await.unwrap()["Failure"].is_object());
        still_answers(&mut c).await;

        let reply = c.request(json!([1, 2, 3])).await;
        assert!(is_failure_mentioning(&reply, "exactly one key"), "{reply}");

        let reply = c.request(json!({"Teleport": {"to": "mars"}})).await;
        assert!(is_failure_mentioning(&reply, "Teleport"), "{reply}");
        still_answers(&mut c).await;

        let reply = c
            .request(json!({"StopSpan": {"request_id": "req-x", "span_id": "span-never-started"}}))
            .await;
        assert!(
            is_failure_mentioning(&reply, "unknown span span-never-started"),
            "{reply}"
        );

        let reply = c
            .request(json!({"StartSpan": {"request_id": "req-x", "span_id": "s", "operation": "X", "timestamp": "soon"}}))
            .await;
        assert!(
            is_failure_mentioning(&reply, "invalid timestamp"),
            "{reply}"
        );

        let reply = c
            .request(json!({"BatchCommand": {"commands": [
                {"StartRequest": {"request_id": "req-ok"}},
                {"Teleport": {}},
                {"FinishRequest": {"request_id": "req-ok"}}
            ]}}))
            .await;
        assert!(
            is_failure_mentioning(&reply, "1 of 3 commands in the batch failed"),
            "{reply}"
        );
        still_answers(&mut c).await;
    }
    // The two good requests of the partly bad batches (one per connection) still arrived.
    let spans = agent.spans(2).await;
    assert!(
        spans
            .iter()
            .all(|s| s.attribute("scout.request_id").unwrap().to_text() == "req-ok")
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_framing_closes_only_that_connection() {
    let agent = TestAgent::start_with(|config| {
        config.max_frame_bytes = 4096;
        config.frame_body_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let mut bystander = Raw::connect(&agent.unix_address()).await;
    still_answers(&mut bystander).await;
    let reply = bystander
        .request(json!({"Register": {"app": "bystander", "key": "k", "language": "python", "api_version": "1.0"}}))
        .await;
    assert_eq!(reply, json!({"Register": {"result": "Success"}}));
    let reply = bystander
        .request(json!({"StartRequest": {"request_id": "req-bystander"}}))
        .await;
    assert_eq!(reply, json!({"StartRequest": {"result": "Success"}}));

    // A length prefix over the limit: a failure reply, then the agent closes.
    let mut oversized = Raw::connect(&agent.tcp_address()).await;
    oversized.write(&1_000_000u32.to_be_bytes()).await;
    let reply = oversized
        .read_reply()
        .await
        .expect("a failure before the close");
    assert!(
        is_failure_mentioning(&reply, "exceeds the limit of 4096"),
        "{reply}"
    );
    assert!(oversized.closed_by_agent().await);

    // A frame cut short by the client going away: closed without a reply.
    let mut truncated = Raw::connect(&agent.tcp_address()).await;
    truncated.write(&100u32.to_be_bytes()).await;
    truncated.write(b"{\"StartRequest\"").await;
    truncated.shutdown_write().await;
    assert!(truncated.closed_by_agent().await);

    // A frame whose rest never comes: closed after the body timeout.
    let mut stalled = Raw::connect(&agent.unix_address()).await;
    stalled.write(&100u32.to_be_bytes()).await;
    stalled.write(b"{\"Sta").await;
    assert!(stalled.closed_by_agent().await);

    // A port probe: connect, close, no frame at all.
    drop(Raw::connect(&agent.tcp_address()).await);

    // The bystander's connection and state survived all of it.
    still_answers(&mut bystander).await;
    let reply = bystander
        .request(json!({"FinishRequest": {"request_id": "req-bystander"}}))
        .await;
    assert_eq!(reply, json!({"FinishRequest": {"result": "Success"}}));
    let spans = agent.spans(1).await;
    assert_eq!(spans[0].service_name(), "bystander");
    let mut fresh = Raw::connect(&agent.tcp_address()).await;
    still_answers(&mut fresh).await;
    agent.stop().await;
}
