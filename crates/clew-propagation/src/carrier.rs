use std::collections::{BTreeMap, HashMap};

use crate::{BAGGAGE, Baggage, TRACEPARENT, TRACESTATE, TraceParent, TraceState};

/// Somewhere to write propagation fields: HTTP request headers, a JSON message
/// envelope, a TCP frame's metadata.
pub trait Injector {
    /// Sets `key` to `value`, replacing any value already there.
    fn set(&mut self, key: &str, value: String);
}

/// Somewhere to read propagation fields from.
///
/// Field names are matched however the carrier sees fit; HTTP carriers should match
/// them ASCII case-insensitively, as the spec requires of header names.
pub trait Extractor {
    /// The value of `key`, if present.
    fn get(&self, key: &str) -> Option<&str>;

    /// Every field name in the carrier.
    fn keys(&self) -> Vec<&str>;

    /// Every value of `key`, in the order received. Carriers that can repeat a field (an
    /// HTTP header sent twice) should override this: repeated `tracestate` and `baggage`
    /// fields are combined, and a repeated `traceparent` is invalid.
    fn get_all(&self, key: &str) -> Vec<&str> {
        self.get(key).into_iter().collect()
    }
}

/// A string map as a carrier. Lookups try the exact key, then its lowercase form, then
/// any key that matches ignoring ASCII case, so a map filled from HTTP headers with
/// their original casing still yields `TraceParent` for `traceparent`.
/// [`Extractor::get_all`] returns the values of every case variant (sorted by key), so
/// the same header sent with two casings counts as repeated.
impl<S: std::hash::BuildHasher> Extractor for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        if let Some(value) = HashMap::get(self, key) {
            return Some(value);
        }
        let lowercase = key.to_ascii_lowercase();
        if let Some(value) = HashMap::get(self, &lowercase) {
            return Some(value);
        }
        // Among several case variants, pick the same one every time.
        self.iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(key))
            .min_by_key(|(name, _)| *name)
            .map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        HashMap::keys(self).map(String::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Vec<&str> {
        let mut matches: Vec<(&String, &String)> = self
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(key))
            .collect();
        matches.sort_unstable_by_key(|(name, _)| *name);
        matches
            .into_iter()
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// Like the `HashMap` carrier: exact, lowercase, then ASCII case-insensitive lookup.
impl Extractor for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        if let Some(value) = BTreeMap::get(self, key) {
            return Some(value);
        }
        if let Some(value) = BTreeMap::get(self, &key.to_ascii_lowercase()) {
            return Some(value);
        }
        self.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        BTreeMap::keys(self).map(String::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Vec<&str> {
        self.iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// Replaces every case variant of `key`, so injecting into a map that already holds
/// `TraceParent` does not leave two traceparents behind.
impl<S: std::hash::BuildHasher> Injector for HashMap<String, String, S> {
    fn set(&mut self, key: &str, value: String) {
        self.retain(|name, _| !name.eq_ignore_ascii_case(key));
        self.insert(key.to_string(), value);
    }
}

/// Replaces every case variant of `key`, like the `HashMap` injector.
impl Injector for BTreeMap<String, String> {
    fn set(&mut self, key: &str, value: String) {
        self.retain(|name, _| !name.eq_ignore_ascii_case(key));
        self.insert(key.to_string(), value);
    }
}

/// The W3C trace context of one message: its `traceparent` and `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    pub parent: TraceParent,
    pub state: TraceState,
}

/// Writes `context` and `baggage` into `carrier` under [`TRACEPARENT`], [`TRACESTATE`]
/// and [`BAGGAGE`]. An empty tracestate or baggage is not written, as the spec asks; a
/// tracestate longer than 512 characters is truncated per [`TraceState::to_header`].
pub fn inject(context: &TraceContext, baggage: &Baggage, carrier: &mut (impl Injector + ?Sized)) {
    carrier.set(TRACEPARENT, context.parent.to_string());
    let state = context.state.to_header();
    if !state.is_empty() {
        carrier.set(TRACESTATE, state);
    }
    if !baggage.is_empty() {
        carrier.set(BAGGAGE, baggage.to_string());
    }
}

/// Reads the trace context from `carrier`.
///
/// `None` when there is no usable `traceparent`: it is absent, invalid, or repeated. The
/// caller then starts a new trace, and must not use the `tracestate`. A `tracestate`
/// that is invalid is replaced by an empty one without affecting the traceparent;
/// repeated `tracestate` fields are combined in order.
pub fn extract(carrier: &(impl Extractor + ?Sized)) -> Option<TraceContext> {
    let [traceparent] = carrier.get_all(TRACEPARENT)[..] else {
        return None;
    };
    let parent = TraceParent::parse(traceparent).ok()?;
    let state = TraceState::parse_combined(carrier.get_all(TRACESTATE)).unwrap_or_default();
    Some(TraceContext { parent, state })
}

/// Reads the baggage from `carrier`, combining repeated `baggage` fields. Baggage is
/// independent of the trace context, so this works with or without a traceparent; see
/// [`Baggage::parse`] for what is dropped.
pub fn extract_baggage(carrier: &(impl Extractor + ?Sized)) -> Baggage {
    Baggage::parse_combined(carrier.get_all(BAGGAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn header_map(fields: &[(&str, &str)]) -> HashMap<String, String> {
        fields
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    /// An HTTP-style header list that can repeat a field.
    struct HeaderList(Vec<(String, String)>);

    impl HeaderList {
        fn new(fields: &[(&str, &str)]) -> HeaderList {
            HeaderList(
                fields
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
            )
        }
    }

    impl Extractor for HeaderList {
        fn get(&self, key: &str) -> Option<&str> {
            self.get_all(key).first().copied()
        }

        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(key, _)| key.as_str()).collect()
        }

        fn get_all(&self, key: &str) -> Vec<&str> {
            self.0
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(key))
                .map(|(_, value)| value.as_str())
                .collect()
        }
    }

    #[test]
    fn extracts_traceparent_and_tracestate() {
        let carrier = header_map(&[
            (TRACEPARENT, PARENT),
            (TRACESTATE, "congo=t61rcWkgMzE"),
            ("unrelated", "x"),
        ]);
        let context = extract(&carrier).unwrap();
        assert_eq!(context.parent.to_string(), PARENT);
        assert_eq!(context.state.get("congo"), Some("t61rcWkgMzE"));
    }

    #[test]
    fn missing_or_invalid_traceparent_means_start_a_new_trace() {
        assert_eq!(extract(&header_map(&[(TRACESTATE, "foo=1")])), None);
        assert_eq!(
            extract(&header_map(&[
                (
                    TRACEPARENT,
                    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                ),
                (TRACESTATE, "foo=1"),
            ])),
            None
        );
        for wrong_name in ["trace-parent", "trace.parent"] {
            assert_eq!(extract(&header_map(&[(wrong_name, PARENT)])), None);
        }
    }

    #[test]
    fn invalid_tracestate_does_not_affect_traceparent() {
        let context = extract(&header_map(&[
            (TRACEPARENT, PARENT),
            (TRACESTATE, "foo=1,BAD=2"),
        ]))
        .unwrap();
        assert_eq!(context.parent.to_string(), PARENT);
        assert!(context.state.is_empty());
    }

    #[test]
    fn header_names_match_case_insensitively() {
        for name in ["TraceParent", "TrAcEpArEnT", "TRACEPARENT"] {
            let carrier: BTreeMap<String, String> = [
                (name.to_string(), PARENT.to_string()),
                ("TraceState".to_string(), "foo=1".to_string()),
            ]
            .into();
            let context = extract(&carrier).unwrap();
            assert_eq!(context.parent.to_string(), PARENT, "{name}");
            assert_eq!(context.state.get("foo"), Some("1"));
            assert_eq!(
                extract(&header_map(&[(name, PARENT)])).map(|c| c.parent.to_string()),
                Some(PARENT.to_string())
            );
        }
        let carrier = header_map(&[("traceparent", PARENT)]);
        assert_eq!(Extractor::get(&carrier, "TRACEPARENT"), Some(PARENT));
    }

    #[test]
    fn a_repeated_traceparent_is_invalid() {
        let other = "00-12345678901234567890123456789012-1234567890123456-01";
        let list = HeaderList::new(&[(TRACEPARENT, PARENT), (TRACEPARENT, other)]);
        assert_eq!(extract(&list), None);
        let map = header_map(&[("traceparent", PARENT), ("TraceParent", other)]);
        assert_eq!(extract(&map), None);
    }

    #[test]
    fn repeated_tracestate_and_baggage_fields_combine_in_order() {
        let list = HeaderList::new(&[
            (TRACESTATE, "foo=1,bar=2"),
            (TRACEPARENT, PARENT),
            ("TraceState", ""),
            (TRACESTATE, "rojo=1,congo=2"),
            (BAGGAGE, "userId=alice"),
            ("Baggage", "serverNode=DF%2028,isProduction=false"),
        ]);
        let context = extract(&list).unwrap();
        assert_eq!(context.state.to_string(), "foo=1,bar=2,rojo=1,congo=2");
        let baggage = extract_baggage(&list);
        assert_eq!(
            baggage.to_string(),
            "userId=alice,serverNode=DF%2028,isProduction=false"
        );
        assert_eq!(baggage.get("serverNode"), Some("DF 28"));
    }

    #[test]
    fn baggage_is_extracted_without_a_traceparent() {
        let carrier = header_map(&[(BAGGAGE, "k=v")]);
        assert_eq!(extract(&carrier), None);
        assert_eq!(extract_baggage(&carrier).get("k"), Some("v"));
        assert!(extract_baggage(&header_map(&[])).is_empty());
    }

    #[test]
    fn inject_then_extract_round_trips() {
        let mut state = TraceState::new();
        state.insert("congo", "t61rcWkgMzE").unwrap();
        let context = TraceContext {
            parent: PARENT.parse().unwrap(),
            state,
        };
        let mut baggage = Baggage::new();
        baggage.set_with_metadata("user", "Amélie", "p").unwrap();

        let mut carrier: HashMap<String, String> = HashMap::new();
        inject(&context, &baggage, &mut carrier);
        assert_eq!(carrier[TRACEPARENT], PARENT);
        assert_eq!(carrier[TRACESTATE], "congo=t61rcWkgMzE");
        assert_eq!(carrier[BAGGAGE], "user=Am%C3%A9lie;p");
        assert_eq!(extract(&carrier), Some(context.clone()));
        assert_eq!(extract_baggage(&carrier), baggage);

        let mut ordered = BTreeMap::new();
        inject(&context, &baggage, &mut ordered);
        assert_eq!(
            Extractor::keys(&ordered),
            [BAGGAGE, TRACEPARENT, TRACESTATE]
        );
        assert_eq!(extract(&ordered), Some(context));
    }

    #[test]
    fn inject_skips_empty_tracestate_and_baggage() {
        let context = TraceContext {
            parent: PARENT.parse().unwrap(),
            state: TraceState::new(),
        };
        let mut carrier: BTreeMap<String, String> = BTreeMap::new();
        inject(&context, &Baggage::new(), &mut carrier);
        assert_eq!(Extractor::keys(&carrier), [TRACEPARENT]);
    }

    #[test]
    fn inject_replaces_case_variants_and_works_through_dyn() {
        let mut carrier = header_map(&[("TraceParent", "stale"), ("other", "kept")]);
        let context = TraceContext {
            parent: PARENT.parse().unwrap(),
            state: TraceState::new(),
        };
        let injector: &mut dyn Injector = &mut carrier;
        inject(&context, &Baggage::new(), injector);
        let mut keys = Extractor::keys(&carrier);
        keys.sort_unstable();
        assert_eq!(keys, ["other", TRACEPARENT]);
        let extractor: &dyn Extractor = &carrier;
        assert_eq!(extract(extractor).unwrap().parent.to_string(), PARENT);
    }
}
