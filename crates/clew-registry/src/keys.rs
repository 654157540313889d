use clew_model::TraceId;

/// The Redis key names, all `{prefix}` + a fixed suffix.
///
/// | key | type | holds |
/// |---|---|---|
/// | `{prefix}trace:{id}` | hash | `state`, `created_at`, `finished_at`, `orphaned_at`, `error`, caller metadata |
/// | `{prefix}traces:active` | sorted set | non-terminal trace ids, score = `created_at` (Unix seconds) |
/// | `{prefix}traces:orphaned` | sorted set | ids the watchdog marked ERRORED, score = `orphaned_at` |
/// | `{prefix}watchdog:leader` | string, PX lease | `"{token} {holder}"` of the current leader |
/// | `{prefix}watchdog:fence` | string | the current leader's fencing token |
/// | `{prefix}watchdog:epoch` | string (INCR) | the fencing-token counter |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    pub fn new(prefix: impl Into<String>) -> KeyLayout {
        KeyLayout {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn trace(&self, id: TraceId) -> String {
        self.trace_member(&id.to_string())
    }

    /// The hash key for an index member as stored (which may be a seed-era hyphenated id).
    pub fn trace_member(&self, member: &str) -> String {
        format!("{}trace:{member}", self.prefix)
    }

    pub fn active(&self) -> String {
        format!("{}traces:active", self.prefix)
    }

    pub fn orphaned(&self) -> String {
        format!("{}traces:orphaned", self.prefix)
    }

    pub fn leader(&self) -> String {
        format!("{}watchdog:leader", self.prefix)
    }

    pub fn fence(&self) -> String {
        format!("{}watchdog:fence", self.prefix)
    }

    pub fn epoch(&self) -> String {
        format!("{}watchdog:epoch", self.prefix)
    }

    /// Whether every key gets the same Redis Cluster hash slot: true when the prefix holds
    /// a non-empty `{tag}` (Redis hashes only the first such tag of a key).
    pub fn has_hash_tag(&self) -> bool {
        self.prefix
            .find('{')
            .and_then(|open| self.prefix[open + 1..].find('}'))
            .is_some_and(|len| len > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_seed_layout() {
        let id: TraceId = "0190163d8f2a7b3c8d4e5f6a7b8c9d0e".parse().unwrap();
        let sg = KeyLayout::new("sg:");
        assert_eq!(sg.trace(id), "sg:trace:0190163d8f2a7b3c8d4e5f6a7b8c9d0e");
        assert_eq!(sg.active(), "sg:traces:active");
        assert_eq!(KeyLayout::new("{clew}:").fence(), "{clew}:watchdog:fence");
    }

    #[test]
    fn hash_tags_are_detected() {
        assert!(KeyLayout::new("{clew}:").has_hash_tag());
        assert!(KeyLayout::new("app:{tr}:").has_hash_tag());
        assert!(!KeyLayout::new("clew:").has_hash_tag());
        assert!(!KeyLayout::new("{}clew:").has_hash_tag());
        assert!(!KeyLayout::new("clew}{:").has_hash_tag());
    }
}
