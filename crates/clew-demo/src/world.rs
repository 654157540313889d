//! The seeded world: where the drones start, how they move, where they meet.
//!
//! Every number the story records (headings, distances, positions of death) is computed
//! here from the seed alone, never from the wall clock or from which task ran first, so
//! every service process that is given the same seed agrees on the same world and the
//! same seed tells the same story run after run. Values are rounded before they are
//! recorded, which also hides any last-bit difference between platforms' `sin`/`cos`.

/// SplitMix64 (Steele, Lea and Flood): its output is fixed by a few lines of integer
/// arithmetic, so a seed keeps its meaning across platforms and releases, which a
/// general-purpose generator such as `rand`'s `StdRng` does not promise.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits (all an `f64` mantissa holds).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }
}

/// The map's reference point (near Kharkiv, where the seed's drones die).
const ORIGIN_LATITUDE: f64 = 50.0;
const ORIGIN_LONGITUDE: f64 = 36.25;
const KM_PER_DEGREE_LATITUDE: f64 = 111.32;

/// The striker stops closing in at this distance and switches to "boogie mode".
pub const INTERCEPT_CUTOFF_KM: f64 = 1.0;
/// Where the last step of the pursuit puts the striker, inside the cutoff.
const FINAL_APPROACH_KM: f64 = 0.8;
/// A pursuit that has not closed by then would be a bug in the numbers below.
const MAX_TICKS: u32 = 500;

/// A position on a flat local map, in km east and north of the reference point: over a
/// few hundred km the curvature of the earth changes nothing the story records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub east_km: f64,
    pub north_km: f64,
}

impl Point {
    fn distance_to(self, other: Point) -> f64 {
        (other.east_km - self.east_km).hypot(other.north_km - self.north_km)
    }

    /// Compass bearing towards `other`: 0° north, 90° east.
    fn bearing_to(self, other: Point) -> f64 {
        let degrees = (other.east_km - self.east_km)
            .atan2(other.north_km - self.north_km)
            .to_degrees();
        degrees.rem_euclid(360.0)
    }

    fn moved(self, bearing_deg: f64, km: f64) -> Point {
        let radians = bearing_deg.to_radians();
        Point {
            east_km: self.east_km + km * radians.sin(),
            north_km: self.north_km + km * radians.cos(),
        }
    }

    pub fn latitude(self) -> f64 {
        ORIGIN_LATITUDE + self.north_km / KM_PER_DEGREE_LATITUDE
    }

    pub fn longitude(self) -> f64 {
        ORIGIN_LONGITUDE
            + self.east_km / (KM_PER_DEGREE_LATITUDE * ORIGIN_LATITUDE.to_radians().cos())
    }
}

/// The drones at the moment drone-cmd calculates the intercept.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    pub orlan_start: Point,
    pub orlan_heading_deg: f64,
    pub orlan_km_per_tick: f64,
    pub striker_start: Point,
    pub striker_km_per_tick: f64,
}

/// What drone-cmd tells the striker: where the target is from where the striker is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InterceptCourse {
    pub heading_deg: f64,
    pub distance_km: f64,
    pub target: Point,
}

/// How the pursuit ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flight {
    /// Simulation steps the pursuit took; the striker sleeps a little per step, which
    /// is how the scenario takes a second instead of the seed's minutes.
    pub ticks: u32,
    pub striker_end: Point,
    pub orlan_end: Point,
    pub final_distance_km: f64,
}

impl World {
    pub fn from_seed(seed: u64) -> World {
        let mut rng = SplitMix64::new(seed);
        let orlan_start = Point {
            east_km: rng.between(-15.0, 15.0),
            north_km: rng.between(-10.0, 10.0),
        };
        let orlan_heading_deg = rng.between(0.0, 360.0);
        let orlan_km_per_tick = rng.between(1.5, 3.0);
        // The striker comes from the west, as in the seed (heading 94.5°, 125.3 km).
        let from_orlan_deg = rng.between(240.0, 300.0);
        let distance_km = rng.between(100.0, 150.0);
        let striker_start = orlan_start.moved(from_orlan_deg, distance_km);
        let striker_km_per_tick = rng.between(10.0, 14.0);
        World {
            orlan_start,
            orlan_heading_deg,
            orlan_km_per_tick,
            striker_start,
            striker_km_per_tick,
        }
    }

    pub fn intercept_course(&self) -> InterceptCourse {
        InterceptCourse {
            heading_deg: round_to(self.striker_start.bearing_to(self.orlan_start), 1),
            distance_km: round_to(self.striker_start.distance_to(self.orlan_start), 1),
            target: self.orlan_start,
        }
    }

    /// Pure pursuit: each tick orlan flies on, then the striker turns towards it and
    /// closes in, until it is within [`INTERCEPT_CUTOFF_KM`]. The striker is faster, so
    /// this ends.
    pub fn fly(&self) -> Flight {
        let mut striker = self.striker_start;
        let mut orlan = self.orlan_start;
        let mut ticks = 0;
        loop {
            ticks += 1;
            orlan = orlan.moved(self.orlan_heading_deg, self.orlan_km_per_tick);
            let gap = striker.distance_to(orlan);
            let step = self
                .striker_km_per_tick
                .min(gap - FINAL_APPROACH_KM)
                .max(0.0);
            striker = striker.moved(striker.bearing_to(orlan), step);
            let gap = striker.distance_to(orlan);
            if gap <= INTERCEPT_CUTOFF_KM || ticks >= MAX_TICKS {
                return Flight {
                    ticks,
                    striker_end: striker,
                    orlan_end: orlan,
                    final_distance_km: round_to(gap, 2),
                };
            }
        }
    }
}

/// Rounds to `decimals` places, the precision the seed document prints.
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs for seed 1234567 from the reference C implementation.
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
        assert_eq!(rng.next_u64(), 9817491932198370423);
    }

    #[test]
    fn the_same_seed_builds_the_same_world_and_flight() {
        assert_eq!(World::from_seed(7), World::from_seed(7));
        assert_eq!(World::from_seed(7).fly(), World::from_seed(7).fly());
        assert_ne!(World::from_seed(7), World::from_seed(8));
    }

    #[test]
    fn every_pursuit_ends_inside_the_cutoff_after_a_few_ticks() {
        for seed in 0..2_000 {
            let world = World::from_seed(seed);
            let course = world.intercept_course();
            assert!(
                (100.0..=150.0).contains(&course.distance_km),
                "seed {seed}: {course:?}"
            );
            assert!(
                (45.0..=135.0).contains(&course.heading_deg),
                "seed {seed}: {course:?}"
            );
            let flight = world.fly();
            assert!(
                flight.final_distance_km <= INTERCEPT_CUTOFF_KM,
                "seed {seed}: {flight:?}"
            );
            assert!((5..=30).contains(&flight.ticks), "seed {seed}: {flight:?}");
        }
    }

    #[test]
    fn positions_stay_near_the_reference_point() {
        let flight = World::from_seed(1).fly();
        for point in [flight.striker_end, flight.orlan_end] {
            assert!((49.0..51.0).contains(&point.latitude()), "{point:?}");
            assert!((34.0..38.5).contains(&point.longitude()), "{point:?}");
        }
    }
}
