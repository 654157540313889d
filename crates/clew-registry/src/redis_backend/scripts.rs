//! The Lua scripts. Each runs atomically on the server, which is what makes
//! "check the state, then mark it" safe against a completion racing the sweep: whichever
//! script Redis runs first wins, and the other sees its result.
//!
//! Every key a script touches is passed in KEYS so that Redis Cluster can route the call
//! and check that they share a slot.

use redis::Script;

/// KEYS: trace hash, active index.
/// ARGV: member, state, created_at, ttl seconds, "1" to index as active / "0" for a
/// terminal initial state, then metadata field/value pairs.
/// Returns 1 when created, 0 when the hash already existed (nothing is changed then, so
/// the first collector to see a trace owns its `created_at`).
const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'created_at', ARGV[3])
if #ARGV >= 6 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 6))
end
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"#;

/// KEYS: trace hash, active index.
/// ARGV: member, target state, now (seconds), terminal ttl seconds, error text or ''.
/// Returns {outcome, previous state}: APPLIED, UNCHANGED, REFUSED or NOT_FOUND.
const TRANSITION: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then
  return {'NOT_FOUND', ''}
end
local to = ARGV[2]
if cur == to then
  return {'UNCHANGED', cur}
end
if cur == 'COMPLETED' or cur == 'ERRORED' or (cur == 'IN_PROGRESS' and to == 'RECEIVED') then
  return {'REFUSED', cur}
end
if to == 'COMPLETED' or to == 'ERRORED' then
  redis.call('HSET', KEYS[1], 'state', to, 'finished_at', ARGV[3])
  if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[1], 'error', ARGV[5])
  end
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'state', to)
end
return {'APPLIED', cur}
"#;

/// KEYS: active index, orphaned index, fence, then one trace hash per member.
/// ARGV: fencing token or '' (unfenced), now (seconds), cutoff (seconds), terminal ttl
/// seconds, orphan-index trim bound (seconds), then the members in KEYS order.
/// Returns {'FENCED', current token} or {'OK', expired, finished, skipped, {orphaned...}}.
///
/// Each member is re-checked against the index here, so the caller's earlier read of
/// the index may be stale without harm: a trace completed since is skipped.
const SWEEP: &str = r#"
if ARGV[1] ~= '' then
  local fence = redis.call('GET', KEYS[3])
  if fence ~= ARGV[1] then
    return {'FENCED', fence or ''}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
local cutoff = tonumber(ARGV[3])
local orphaned = {}
local expired, finished, skipped = 0, 0, 0
for i = 4, #KEYS do
  local member = ARGV[i + 2]
  local score = redis.call('ZSCORE', KEYS[1], member)
  if score and tonumber(score) <= cutoff then
    local state = redis.call('HGET', KEYS[i], 'state')
    if not state then
      expired = expired + 1
    elseif state == 'COMPLETED' or state == 'ERRORED' then
      finished = finished + 1
    else
      redis.call('HSET', KEYS[i], 'state', 'ERRORED', 'orphaned_at', ARGV[2], 'error', 'orphaned')
      redis.call('EXPIRE', KEYS[i], ARGV[4])
      redis.call('ZADD', KEYS[2], ARGV[2], member)
      orphaned[#orphaned + 1] = member
    end
    redis.call('ZREM', KEYS[1], member)
  else
    skipped = skipped + 1
  end
end
return {'OK', expired, finished, skipped, orphaned}
"#;

/// KEYS: leader, epoch, fence. ARGV: holder, ttl ms, epoch seed (Unix ms).
/// Returns {1, token} when acquired, {0, current lease value} when held by someone.
///
/// The epoch is seeded from the wall clock when missing, so tokens keep increasing even
/// after Redis loses its data (a restart without persistence); otherwise a new leader
/// could be handed a token a stale leader still holds.
const ACQUIRE: &str = r#"
local held = redis.call('GET', KEYS[1])
if held then
  return {0, held}
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], ARGV[3])
end
local token = tostring(redis.call('INCR', KEYS[2]))
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'NX', 'PX', ARGV[2])
redis.call('SET', KEYS[3], token)
return {1, token}
"#;

/// KEYS: leader, fence. ARGV: lease value, ttl ms, token.
/// Compare-and-set: only the holder of this very term may extend it.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// KEYS: leader, fence. ARGV: lease value, token.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('GET', KEYS[2]) == ARGV[2] then
    redis.call('DEL', KEYS[2])
  end
  return 1
end
return 0
"#;

#[derive(Debug)]
pub(crate) struct Scripts {
    pub create: Script,
    pub transition: Script,
    pub sweep: Script,
    pub acquire: Script,
    pub renew: Script,
    pub release: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            create: Script::new(CREATE),
            transition: Script::new(TRANSITION),
            sweep: Script::new(SWEEP),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        }
    }

    pub fn all(&self) -> [&Script; 6] {
        [
            &self.create,
            &self.transition,
            &self.sweep,
            &self.acquire,
            &self.renew,
            &self.release,
        ]
    }
}
