//! What the services say to each other: the bodies of bus messages and TCP prayers.
//! The trace context never appears here; the SDK carries it beside the body (message
//! envelope) or in front of it (TCP frame).

use serde::{Deserialize, Serialize};

use crate::world::{Point, round_to};

pub const STRIKER_CONTROL_CHANNEL: &str = "striker_control_channel";
pub const DRONE_COMMAND_CHANNEL: &str = "drone_command";
pub const LOCK_RESPONSE_CHANNEL: &str = "striker_lock_response_channel";
pub const DEATH_KNELL_CHANNEL: &str = "death-knell";
/// The `lost-death-notice` fault: ares sends orlan's notice here, a channel nobody
/// subscribes to. A typo in a channel name is how such messages are lost in practice,
/// and the trace shows it (`Publishes to: death_knell`, no consumer).
pub const MISSPELT_DEATH_KNELL_CHANNEL: &str = "death_knell";

/// Every channel, for the sidecar that observes them all.
pub const ALL_CHANNELS: [&str; 4] = [
    STRIKER_CONTROL_CHANNEL,
    DRONE_COMMAND_CHANNEL,
    LOCK_RESPONSE_CHANNEL,
    DEATH_KNELL_CHANNEL,
];

pub const STRIKER: &str = "striker";
pub const ORLAN: &str = "orlan";
pub const OPS_TEAM: &str = "fpv-ops-alpha";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockRequest {
    pub interceptor: String,
    pub target: String,
    pub ops_team: String,
    /// The service the team operates from (drone-cmd records this one).
    pub ops_service: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InterceptCommands {
    pub commands: Vec<InterceptCommand>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InterceptCommand {
    pub interceptor: String,
    pub target: String,
    pub heading_deg: f64,
    pub distance_km: f64,
    pub target_position: Position,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockAck {
    pub interceptor: String,
    pub target: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prayer {
    pub sender: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub striker_id: Option<String>,
    pub target: String,
    pub text: String,
    /// Only the striker, which is there, knows where both drones are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub striker_position: Option<Position>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_position: Option<Position>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrayerReply {
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeathNotice {
    #[serde(rename = "type")]
    pub kind: String,
    pub recipient: String,
    pub position: Position,
}

/// Degrees, rounded to 4 decimals (about 10 m), as the seed prints them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub latitude: f64,
    pub longitude: f64,
}

impl From<Point> for Position {
    fn from(point: Point) -> Position {
        Position {
            latitude: round_to(point.latitude(), 4),
            longitude: round_to(point.longitude(), 4),
        }
    }
}
