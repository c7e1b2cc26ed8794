//! The state lock and atomic writes between real processes. The test binary re-executes
//! itself as a child (`ECOBOOT_TEST_CHILD`) that holds the lock or writes state in a loop.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{config_with_key, ecoboot, run};
use ecoboot::state::{StageStatus, State, Store};

const CHILD: &str = "ECOBOOT_TEST_CHILD";

/// Child entry point; does nothing in a normal test run.
#[test]
fn child_process() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (what, dir) = spec.split_once(':').unwrap();
    let dir = PathBuf::from(dir);
    let store = Store::lock(&dir, "sesacthon").expect("child takes the lock");
    match what {
        "hold" => {
            std::fs::write(dir.join("child-ready"), std::process::id().to_string()).unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "write" => {
            let mut state = State::new("sesacthon");
            std::fs::write(dir.join("child-ready"), "").unwrap();
            for i in 0u64.. {
                state.record_mut("network").attempts = (i % 1000) as u32;
                state.record_mut("network").status = StageStatus::Running;
                // A large output makes every write take long enough to be killed in the middle.
                state.set_output(
                    "instances",
                    &serde_json::json!({ "i": i, "pad": "x".repeat(200_000) }),
                );
                store.save(&state).unwrap();
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn_child(what: &str, dir: &Path) -> Child {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{what}:{}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("child-ready").exists() {
        assert!(Instant::now() < deadline, "child did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn a_second_run_exits_3_naming_the_holder_and_a_dead_holder_leaves_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key(dir.path());
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let mut holder = spawn_child("hold", &state_dir);
    let (code, _, err) = run(ecoboot(&state_dir).arg("-c").arg(&config).arg("up"));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("pid {}", holder.id())),
        "names the holder: {err}"
    );
    assert!(matches!(
        Store::lock(&state_dir, "sesacthon"),
        Err(ecoboot::error::Error::Locked { .. })
    ));
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The lock died with the process: the next run gets past the lock (and fails later, at the
    // first unimplemented stage, with exit 1).
    let (code, _, err) =
        run(ecoboot(&state_dir)
            .arg("-c")
            .arg(&config)
            .args(["up", "--from", "prepare-nodes"]));
    assert_eq!(code, 1, "{err}");
}

#[test]
fn state_survives_kill_9_in_the_middle_of_writes() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = spawn_child("write", dir.path());
        // Under load the writer may not have written yet: wait for its first write, then kill
        // it at a varying point of the writes that follow.
        let first = dir.path().join("sesacthon/state.json");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !first.exists() {
            assert!(Instant::now() < deadline, "the writer never wrote");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20 + round * 70));
        writer.kill().unwrap(); // SIGKILL
        writer.wait().unwrap();
        let store = Store::lock(dir.path(), "sesacthon").unwrap();
        assert!(store.path().exists(), "the writer wrote at least once");
        let state = store
            .load("sesacthon")
            .expect("a complete state file after kill -9");
        assert_eq!(state.record("network").status, StageStatus::Running);
    }
}
