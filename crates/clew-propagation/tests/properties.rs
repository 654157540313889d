//! Property tests: formatting and parsing agree, and parsing arbitrary input neither
//! panics nor produces a value that formats to something else.

use std::collections::HashMap;

use clew_model::{SpanId, TraceId};
use clew_propagation::{
    Baggage, KNOWN_FLAGS, MAX_BAGGAGE_BYTES, MAX_BAGGAGE_MEMBERS, MAX_TRACESTATE_HEADER_LEN,
    TraceContext, TraceParent, TraceState, extract, extract_baggage, inject,
};
use proptest::prelude::*;

fn trace_id() -> impl Strategy<Value = TraceId> {
    any::<[u8; 16]>()
        .prop_filter("all-zero ids are invalid", |bytes| *bytes != [0; 16])
        .prop_map(TraceId)
}

fn span_id() -> impl Strategy<Value = SpanId> {
    any::<[u8; 8]>()
        .prop_filter("all-zero ids are invalid", |bytes| *bytes != [0; 8])
        .prop_map(SpanId)
}

fn trace_parent() -> impl Strategy<Value = TraceParent> {
    (trace_id(), span_id(), any::<u8>())
        .prop_map(|(trace_id, span_id, flags)| TraceParent::new(trace_id, span_id, flags))
}

/// Text made of the characters that matter to the traceparent grammar.
fn traceparent_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-fA-F\\- \t.]{0,70}",
        // A valid header with one character replaced or a suffix appended.
        (trace_parent(), 0usize..56, any::<char>()).prop_map(|(parent, at, c)| {
            let mut text: Vec<char> = parent.to_string().chars().collect();
            if at < text.len() {
                text[at] = c;
            } else {
                text.push(c);
            }
            text.into_iter().collect()
        }),
        (
            trace_parent(),
            "[0-9a-f]{2}",
            "(-[a-z\\-]{0,10})?|[^-].{0,5}"
        )
            .prop_map(|(parent, version, suffix)| {
                format!("{version}{}{suffix}", &parent.to_string()[2..])
            }),
    ]
}

fn tracestate_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9_\\-*/@]{0,20}",
        "[a-z0-9][a-z0-9_\\-*/@]{0,255}",
        "[a-z0-9][a-z0-9_\\-*/]{0,240}@[a-z][a-z0-9_\\-*/]{0,13}",
    ]
}

fn tracestate_value() -> impl Strategy<Value = String> {
    prop_oneof![
        r"[ -+\--<>-~]{0,20}[!-+\--<>-~]",
        r"[ -+\--<>-~]{0,255}[!-+\--<>-~]",
    ]
}

fn trace_state() -> impl Strategy<Value = TraceState> {
    proptest::collection::vec((tracestate_key(), tracestate_value()), 0..=32).prop_map(|entries| {
        let mut state = TraceState::new();
        // Inserting moves to the front, so insert right-to-left to keep this order.
        for (key, value) in entries.iter().rev() {
            state
                .insert(key, value)
                .expect("generated entries are valid");
        }
        state
    })
}

fn tracestate_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9=,@*/_ \t\\-]{0,80}",
        proptest::collection::vec(
            ("[a-z0-9@]{1,6}", "[ -~]{0,6}", "[ \t]{0,2},[ \t]{0,2}"),
            0..40
        )
        .prop_map(|members| {
            members
                .into_iter()
                .map(|(key, value, separator)| format!("{key}={value}{separator}"))
                .collect()
        }),
    ]
}

fn baggage_key() -> impl Strategy<Value = String> {
    "[!#$%&'*+\\-.^_`|~0-9A-Za-z]{1,20}"
}

fn baggage_metadata() -> impl Strategy<Value = String> {
    let octets = r"[!#-+\--:<-\[\]-~]{0,10}";
    let property = prop_oneof![
        baggage_key(),
        (baggage_key(), octets).prop_map(|(key, value)| format!("{key}={value}")),
    ];
    proptest::collection::vec(property, 0..4).prop_map(|properties| properties.join(";"))
}

fn baggage() -> impl Strategy<Value = Baggage> {
    // At most 12 members of at most ~510 formatted bytes each stay within 8192 bytes.
    proptest::collection::vec((baggage_key(), ".{0,30}", baggage_metadata()), 0..12).prop_map(
        |members| {
            let mut baggage = Baggage::new();
            for (key, value, metadata) in members {
                baggage
                    .set_with_metadata(&key, &value, &metadata)
                    .expect("generated members are valid and within the limits");
            }
            baggage
        },
    )
}

fn baggage_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9=,;% \t\"\\\\é]{0,80}",
        proptest::collection::vec(
            (
                "[a-zA-Z0-9 ]{0,6}",
                "[a-zA-Z0-9%= é]{0,12}",
                "(;[a-z =]{0,5}){0,2}"
            ),
            0..30
        )
        .prop_map(|members| {
            members
                .into_iter()
                .map(|(key, value, properties)| format!("{key}={value}{properties}"))
                .collect::<Vec<_>>()
                .join(",")
        }),
    ]
}

proptest! {
    #[test]
    fn traceparent_format_then_parse_round_trips(parent in trace_parent()) {
        let text = parent.to_string();
        prop_assert_eq!(text.len(), 55);
        prop_assert_eq!(TraceParent::parse(&text), Ok(parent));
        prop_assert_eq!(parent.flags & !KNOWN_FLAGS, 0);
    }

    #[test]
    fn future_versions_parse_to_the_same_context(
        parent in trace_parent(),
        version in 1u8..0xff,
        suffix in "(-.{0,20})?",
    ) {
        let text = format!("{version:02x}{}{suffix}", &parent.to_string()[2..]);
        let parsed = TraceParent::parse(&text).unwrap();
        prop_assert_eq!(parsed.version, version);
        prop_assert_eq!(TraceParent { version: 0, ..parsed }, parent);
    }

    #[test]
    fn traceparent_parsing_is_total_and_stable(text in traceparent_like()) {
        if let Ok(parsed) = TraceParent::parse(&text) {
            let formatted = parsed.to_string();
            prop_assert!(formatted.len() == 55);
            prop_assert_eq!(
                TraceParent::parse(&formatted),
                Ok(TraceParent { version: 0, ..parsed })
            );
            prop_assert!(text.trim_matches([' ', '\t']).len() >= 55);
        }
    }

    #[test]
    fn tracestate_format_then_parse_round_trips(state in trace_state()) {
        prop_assert_eq!(TraceState::parse(&state.to_string()), Ok(state.clone()));
    }

    #[test]
    fn tracestate_header_fits_and_keeps_order(state in trace_state()) {
        let header = state.to_header();
        prop_assert!(header.len() <= MAX_TRACESTATE_HEADER_LEN);
        let sent = TraceState::parse(&header).unwrap();
        // What is sent is the received list with whole entries removed.
        let mut remaining = state.iter();
        for entry in sent.iter() {
            prop_assert!(remaining.any(|original| original == entry));
        }
        if state.to_string().len() <= MAX_TRACESTATE_HEADER_LEN {
            prop_assert_eq!(&sent, &state);
        }
    }

    #[test]
    fn tracestate_parsing_is_total_and_stable(text in tracestate_like()) {
        if let Ok(parsed) = TraceState::parse(&text) {
            prop_assert!(parsed.len() <= 32);
            prop_assert_eq!(TraceState::parse(&parsed.to_string()), Ok(parsed));
        }
    }

    #[test]
    fn baggage_format_then_parse_round_trips(baggage in baggage()) {
        let text = baggage.to_string();
        prop_assert_eq!(text.len(), baggage.encoded_len());
        prop_assert_eq!(Baggage::parse(&text), baggage);
    }

    #[test]
    fn baggage_parsing_is_total_and_stable(text in baggage_like()) {
        let parsed = Baggage::parse(&text);
        prop_assert!(parsed.len() <= MAX_BAGGAGE_MEMBERS);
        let formatted = parsed.to_string();
        prop_assert!(formatted.len() <= MAX_BAGGAGE_BYTES);
        prop_assert_eq!(formatted.len(), parsed.encoded_len());
        prop_assert_eq!(Baggage::parse(&formatted), parsed);
    }

    #[test]
    fn inject_then_extract_round_trips(
        parent in trace_parent(),
        state in trace_state(),
        baggage in baggage(),
    ) {
        let context = TraceContext { parent, state };
        let mut carrier = HashMap::new();
        inject(&context, &baggage, &mut carrier);
        let extracted = extract(&carrier).unwrap();
        prop_assert_eq!(extracted.parent, parent);
        prop_assert_eq!(extracted.state, context.state.truncated(MAX_TRACESTATE_HEADER_LEN));
        prop_assert_eq!(extract_baggage(&carrier), baggage);
    }
}

proptest! {
    // Each case builds a header of up to ~100 KB, so fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn large_baggage_is_cut_to_the_limits(
        members in proptest::collection::vec(("[a-z]{1,8}", "[ -~é\u{1F600}]{0,300}"), 0..120),
    ) {
        let header = members
            .iter()
            .map(|(key, value)| {
                let mut single = Baggage::new();
                single.set(key, value).unwrap();
                single.to_string()
            })
            .collect::<Vec<_>>()
            .join(",");
        let parsed = Baggage::parse(&header);
        prop_assert!(parsed.len() <= MAX_BAGGAGE_MEMBERS);
        prop_assert!(parsed.to_string().len() <= MAX_BAGGAGE_BYTES);
        // Every kept member is the first one received under its key.
        for member in parsed.iter() {
            let first = members.iter().find(|(key, _)| key == member.key()).unwrap();
            prop_assert_eq!(member.value(), first.1.as_str());
        }
        // Nothing is dropped when everything fits.
        let mut first_members = Baggage::new();
        let mut fits = true;
        for (key, value) in &members {
            if first_members.get(key).is_none() && first_members.set(key, value).is_err() {
                fits = false;
                break;
            }
        }
        if fits {
            prop_assert_eq!(parsed, first_members);
        }
    }
}
