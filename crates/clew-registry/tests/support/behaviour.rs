//! Behaviour every backend must show, written once against `dyn Registry`. Each test
//! file builds a registry on a [`ManualClock`] and calls these.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use clew_model::TraceId;
use clew_registry::{
    ActiveCursor, CreateOutcome, ManualClock, Metadata, ORPHANED_ERROR, Registry, RegistryError,
    TraceState, Transition,
};

pub const THRESHOLD: Duration = Duration::from_secs(1800);
pub const HOUR_MS: u64 = 3_600_000;

pub fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn state_of(registry: &dyn Registry, id: TraceId) -> Option<TraceState> {
    registry.get(id).await.unwrap().map(|r| r.state)
}

/// Forward-only transitions, final terminal states, idempotent creation.
pub async fn lifecycle_rules(registry: Arc<dyn Registry>, clock: Arc<ManualClock>) {
    let r = registry.as_ref();
    let id = TraceId::generate();
    let t0 = clock.now_ms_for_tests();
    let metadata = meta(&[("service", "checkout"), ("channel", "web")]);
    assert_eq!(
        r.create_trace(id, TraceState::Received, &metadata)
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        r.create_trace(id, TraceState::InProgress, &meta(&[("other", "x")]))
            .await
            .unwrap(),
        CreateOutcome::AlreadyExists,
        "a second registration must change nothing"
    );
    let record = r.get(id).await.unwrap().expect("registered");
    assert_eq!(record.state, TraceState::Received);
    assert_eq!(record.created_at_ms, t0);
    assert_eq!(record.metadata, metadata);
    assert_eq!(record.finished_at_ms, None);

    assert_eq!(
        r.transition(id, TraceState::InProgress).await.unwrap(),
        Transition::Applied {
            from: TraceState::Received
        }
    );
    assert_eq!(
        r.transition(id, TraceState::InProgress).await.unwrap(),
        Transition::Unchanged
    );
    assert_eq!(
        r.transition(id, TraceState::Received).await.unwrap(),
        Transition::Refused {
            current: TraceState::InProgress
        },
        "states never move backwards"
    );
    assert_eq!(r.active_count().await.unwrap(), 1);
    clock.advance(Duration::from_secs(4));
    assert_eq!(
        r.transition(id, TraceState::Completed).await.unwrap(),
        Transition::Applied {
            from: TraceState::InProgress
        }
    );
    assert_eq!(r.active_count().await.unwrap(), 0, "completion de-indexes");
    for to in [
        TraceState::Errored,
        TraceState::Received,
        TraceState::InProgress,
    ] {
        assert_eq!(
            r.transition(id, to).await.unwrap(),
            Transition::Refused {
                current: TraceState::Completed
            },
            "terminal states are final"
        );
    }
    let record = r.get(id).await.unwrap().unwrap();
    assert_eq!(record.state, TraceState::Completed);
    assert_eq!(record.finished_at_ms, Some(t0 + 5000));
    assert!(!record.is_orphaned());

    let failed = TraceId::generate();
    r.create_trace(failed, TraceState::Received, &Metadata::new())
        .await
        .unwrap();
    assert_eq!(
        r.mark_errored(failed, "span error: payment declined")
            .await
            .unwrap(),
        Transition::Applied {
            from: TraceState::Received
        }
    );
    let record = r.get(failed).await.unwrap().unwrap();
    assert_eq!(record.state, TraceState::Errored);
    assert_eq!(
        record.error.as_deref(),
        Some("span error: payment declined")
    );
    assert!(!record.is_orphaned());

    let unknown = TraceId::generate();
    assert_eq!(r.get(unknown).await.unwrap(), None);
    assert_eq!(
        r.transition(unknown, TraceState::Completed).await.unwrap(),
        Transition::NotFound
    );

    let err = r
        .create_trace(
            TraceId::generate(),
            TraceState::Received,
            &meta(&[("state", "x")]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ReservedField(ref f) if f == "state"),
        "{err}"
    );

    // A trace registered already finished never enters the active index.
    let done = TraceId::generate();
    r.create_trace(done, TraceState::Completed, &Metadata::new())
        .await
        .unwrap();
    assert_eq!(r.active_count().await.unwrap(), 0);
    assert_eq!(state_of(r, done).await, Some(TraceState::Completed));
}

/// A trace is never swept before the threshold; old unfinished ones are, finished ones
/// are not; the report and the stored entry say so.
pub async fn sweeps_only_old_unfinished(registry: Arc<dyn Registry>, clock: Arc<ManualClock>) {
    let r = registry.as_ref();
    let t0 = clock.now_ms_for_tests();
    let received = TraceId::generate();
    let in_progress = TraceId::generate();
    let completed = TraceId::generate();
    for id in [received, in_progress, completed] {
        r.create_trace(id, TraceState::Received, &meta(&[("service", "gateway")]))
            .await
            .unwrap();
    }
    r.transition(in_progress, TraceState::InProgress)
        .await
        .unwrap();
    // Ten minutes old at the sweep's `now`: too young to be an orphan.
    clock.set(t0 + 2 * HOUR_MS - 600_000);
    let young = TraceId::generate();
    r.create_trace(young, TraceState::Received, &Metadata::new())
        .await
        .unwrap();
    // Old, but finished before the sweep: never touched.
    r.transition(completed, TraceState::Completed)
        .await
        .unwrap();

    // One millisecond short of the threshold: nothing may be touched.
    let early = t0 + THRESHOLD.as_millis() as u64 - 1;
    let report = r.sweep_once(early, THRESHOLD, None).await.unwrap();
    assert!(report.orphaned.is_empty(), "swept early: {report:?}");
    assert_eq!(report.examined(), 0);
    assert_eq!(r.active_count().await.unwrap(), 3);
    assert_eq!(state_of(r, received).await, Some(TraceState::Received));

    let now = t0 + 2 * HOUR_MS;
    clock.set(now);
    let report = r.sweep_once(now, THRESHOLD, None).await.unwrap();
    let swept: BTreeSet<TraceId> = report.orphaned.iter().map(|o| o.id).collect();
    assert_eq!(swept, BTreeSet::from([received, in_progress]));
    for orphan in &report.orphaned {
        assert_eq!(orphan.created_at_ms, t0);
        assert_eq!(orphan.age, Duration::from_millis(2 * HOUR_MS));
    }
    assert_eq!(report.expired, 0);
    for id in [received, in_progress] {
        let record = r.get(id).await.unwrap().unwrap();
        assert_eq!(record.state, TraceState::Errored);
        assert_eq!(record.orphaned_at_ms, Some(now));
        assert_eq!(record.error.as_deref(), Some(ORPHANED_ERROR));
        assert_eq!(record.metadata, meta(&[("service", "gateway")]));
    }
    assert_eq!(state_of(r, completed).await, Some(TraceState::Completed));
    assert_eq!(state_of(r, young).await, Some(TraceState::Received));
    assert_eq!(r.active_count().await.unwrap(), 1);

    let orphans = r.list_orphans(10).await.unwrap();
    let listed: BTreeSet<TraceId> = orphans.iter().map(|o| o.id).collect();
    assert_eq!(listed, BTreeSet::from([received, in_progress]));
    assert!(orphans.iter().all(|o| o.is_orphaned()));

    // A second sweep finds nothing left to do.
    let again = r.sweep_once(now, THRESHOLD, None).await.unwrap();
    assert_eq!(again.examined(), 0, "{again:?}");
}

/// A trace the sweep already marked stays ERRORED; a late completion is refused.
pub async fn late_completion_is_refused(registry: Arc<dyn Registry>, clock: Arc<ManualClock>) {
    let r = registry.as_ref();
    let id = TraceId::generate();
    r.create_trace(id, TraceState::InProgress, &Metadata::new())
        .await
        .unwrap();
    let now = clock.now_ms_for_tests() + HOUR_MS;
    let report = r.sweep_once(now, THRESHOLD, None).await.unwrap();
    assert_eq!(report.orphaned.len(), 1);
    assert_eq!(
        r.transition(id, TraceState::Completed).await.unwrap(),
        Transition::Refused {
            current: TraceState::Errored
        }
    );
}

/// Completion racing the sweep: whichever runs first wins, and a completion that was
/// applied is never overwritten with ERRORED.
pub async fn completion_races_sweep(
    registry: Arc<dyn Registry>,
    clock: Arc<ManualClock>,
    rounds: usize,
    per_round: usize,
) {
    let mut completion_won = 0usize;
    let mut sweep_won = 0usize;
    for round in 0..rounds {
        let ids: Vec<TraceId> = (0..per_round).map(|_| TraceId::generate()).collect();
        for id in &ids {
            registry
                .create_trace(*id, TraceState::InProgress, &Metadata::new())
                .await
                .unwrap();
        }
        let now = clock.now_ms_for_tests() + HOUR_MS;
        // Alternate who is spawned first so both orders get exercised.
        let mut completions = Vec::new();
        let spawn_completions = |completions: &mut Vec<_>| {
            for id in ids.clone() {
                let r = registry.clone();
                completions.push(tokio::spawn(async move {
                    (id, r.transition(id, TraceState::Completed).await.unwrap())
                }));
            }
        };
        if round % 2 == 0 {
            spawn_completions(&mut completions);
        }
        let r = registry.clone();
        let sweep = tokio::spawn(async move { r.sweep_once(now, THRESHOLD, None).await.unwrap() });
        if round % 2 == 1 {
            spawn_completions(&mut completions);
        }
        let report = sweep.await.unwrap();
        let orphaned: BTreeSet<TraceId> = report.orphaned.iter().map(|o| o.id).collect();
        for handle in completions {
            let (id, outcome) = handle.await.unwrap();
            let record = registry.get(id).await.unwrap().unwrap();
            match outcome {
                Transition::Applied { .. } => {
                    completion_won += 1;
                    assert_eq!(
                        record.state,
                        TraceState::Completed,
                        "round {round}: completion was applied but the trace ended {:?}",
                        record.state
                    );
                    assert!(
                        !orphaned.contains(&id),
                        "round {round}: completed trace reported orphaned"
                    );
                    assert!(!record.is_orphaned());
                }
                Transition::Refused {
                    current: TraceState::Errored,
                } => {
                    sweep_won += 1;
                    assert_eq!(record.state, TraceState::Errored);
                    assert!(record.is_orphaned());
                    assert!(
                        orphaned.contains(&id),
                        "round {round}: orphan missing from the report"
                    );
                }
                other => panic!("round {round}: unexpected completion outcome {other:?}"),
            }
        }
        assert_eq!(registry.active_count().await.unwrap(), 0, "round {round}");
    }
    eprintln!(
        "{} races: completion first {completion_won}, sweep first {sweep_won}",
        rounds * per_round
    );
    assert_eq!(completion_won + sweep_won, rounds * per_round);
}

/// Paging through the active index visits every trace once, in creation order, even
/// when many share a millisecond.
pub async fn lists_active_in_pages(registry: Arc<dyn Registry>, clock: Arc<ManualClock>) {
    let mut expected = Vec::new();
    for i in 0..23 {
        // Five traces per millisecond, so pages end inside a run of equal timestamps.
        if i % 5 == 0 {
            clock.advance(Duration::from_millis(1));
        }
        let id = TraceId::generate();
        registry
            .create_trace(id, TraceState::Received, &Metadata::new())
            .await
            .unwrap();
        expected.push((clock.now_ms_for_tests(), id));
    }
    expected.sort();
    let mut seen = Vec::new();
    let mut after: Option<ActiveCursor> = None;
    let mut pages = 0;
    loop {
        let page = registry.list_active(7, after).await.unwrap();
        pages += 1;
        assert!(page.traces.len() <= 7);
        seen.extend(page.traces.iter().map(|t| (t.created_at_ms, t.id)));
        match page.next {
            Some(next) => {
                // The cursor survives a round trip through text (as a CLI would pass it).
                after = Some(next.to_string().parse().unwrap());
            }
            None => break,
        }
        assert!(pages < 10, "paging does not terminate");
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 4);
    let all = registry.list_active(100, None).await.unwrap();
    assert_eq!(all.traces.len(), 23);
    assert_eq!(all.next, None);
}

trait NowForTests {
    fn now_ms_for_tests(&self) -> u64;
}

impl NowForTests for ManualClock {
    fn now_ms_for_tests(&self) -> u64 {
        clew_registry::Clock::now_ms(self)
    }
}
