//! Unit tests of the runner: skip, plan, apply, verify, journal.

use super::*;
use crate::engine::{Found, Stage};
use crate::event::{Events, Reporter};
use crate::state::Store;
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The "real world" fake stages look at: which stages have taken effect.
#[derive(Default)]
struct World {
    done: [AtomicBool; 4],
    fail_stage: AtomicUsize,
    applies: [AtomicUsize; 4],
}

struct Fake {
    n: usize,
    world: Arc<World>,
}

const IDS: [&str; 4] = ["one", "two", "three", "four"];

#[async_trait]
impl Stage for Fake {
    type Plan = Vec<Action>;

    fn id(&self) -> &'static str {
        IDS[self.n]
    }
    fn title(&self) -> &'static str {
        "fake"
    }
    async fn probe(&self, _: &Ctx) -> Result<Found<Vec<Action>>> {
        Ok(if self.world.done[self.n].load(Ordering::SeqCst) {
            Found::done("exists")
        } else {
            Found::Todo(vec![Action::new(Stage::id(self), "create")])
        })
    }
    async fn apply(&self, _: &Ctx, _: Vec<Action>) -> Result<()> {
        self.world.applies[self.n].fetch_add(1, Ordering::SeqCst);
        if self.world.fail_stage.load(Ordering::SeqCst) == self.n + 1 {
            return Err(Error::StageFailed {
                stage: Stage::id(self).into(),
                message: "injected".into(),
                help: "rerun".into(),
            });
        }
        self.world.done[self.n].store(true, Ordering::SeqCst);
        Ok(())
    }
}

struct Sink(Mutex<Vec<Event>>);
impl Reporter for Sink {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
}

fn setup(world: &Arc<World>) -> (Vec<Box<dyn DynStage>>, tempfile::TempDir) {
    let stages = (0..4)
        .map(|n| {
            Box::new(Fake {
                n,
                world: world.clone(),
            }) as Box<dyn DynStage>
        })
        .collect();
    (stages, tempfile::tempdir().unwrap())
}

fn ctx(dir: &std::path::Path) -> (Ctx, Arc<Sink>) {
    let sink = Arc::new(Sink(Mutex::new(Vec::new())));
    let store = Store::lock(dir, "test").unwrap();
    let state = store.load("test").unwrap();
    let config = crate::config::tests_support::config();
    (
        Ctx::new(Arc::new(config), Events::new(sink.clone()), store, state),
        sink,
    )
}

#[tokio::test]
async fn failure_then_rerun_resumes_at_the_failed_stage() {
    let world = Arc::new(World::default());
    world.fail_stage.store(3, Ordering::SeqCst);
    let (stages, dir) = setup(&world);
    {
        let (cx, _) = ctx(dir.path());
        let err = Runner::new(&stages, &cx)
            .run(RunMode::Apply)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("injected"));
        let st = cx.state();
        assert_eq!(st.record("two").status, StageStatus::Done);
        assert_eq!(st.record("three").status, StageStatus::Failed);
        assert_eq!(st.record("four").status, StageStatus::Pending);
    }
    world.fail_stage.store(0, Ordering::SeqCst);
    let (cx, sink) = ctx(dir.path());
    Runner::new(&stages, &cx).run(RunMode::Apply).await.unwrap();
    let applies: Vec<usize> = world
        .applies
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect();
    assert_eq!(applies, vec![1, 1, 2, 1], "stages 1-2 skipped on the rerun");
    let skipped: Vec<String> = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::StageSkipped { stage, .. } => Some(stage.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, vec!["one", "two"]);
    assert_eq!(cx.state().record("three").attempts, 2);
}

#[tokio::test]
async fn plan_mode_never_applies_and_from_to_narrow() {
    let world = Arc::new(World::default());
    let (stages, dir) = setup(&world);
    let (cx, sink) = ctx(dir.path());
    let range = select(&stages, Some("two"), Some("three")).unwrap();
    Runner::new(range, &cx).run(RunMode::Plan).await.unwrap();
    assert!(world.applies.iter().all(|a| a.load(Ordering::SeqCst) == 0));
    let planned: Vec<String> = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::StagePlan { stage, .. } => Some(stage.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(planned, vec!["two", "three"]);
    Runner::new(range, &cx).run(RunMode::Apply).await.unwrap();
    assert_eq!(world.applies[0].load(Ordering::SeqCst), 0);
    assert_eq!(world.applies[3].load(Ordering::SeqCst), 0);
    assert!(select(&stages, Some("four"), Some("one")).is_err());
    assert!(select(&stages, Some("nope"), None).is_err());
}
