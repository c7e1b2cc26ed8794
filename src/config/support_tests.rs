//! Unit tests of the support-window table and the runtime rules.

use super::*;

#[test]
fn the_table_is_well_formed() {
    for w in WINDOWS {
        assert!(w.released < w.end, "{} {}", w.component.as_str(), w.version);
        let parts: Vec<&str> = w.version.split('.').collect();
        assert_eq!(parts.len(), 2, "{}", w.version);
        assert!(
            parts.iter().all(|p| p.parse::<u32>().is_ok()),
            "{}",
            w.version
        );
    }
    let k8s: Vec<&Window> = WINDOWS
        .iter()
        .filter(|w| w.component == Kubernetes)
        .collect();
    for pair in k8s.windows(2) {
        assert_eq!(
            minor_number(pair[1].version),
            minor_number(pair[0].version).map(|m| m + 1),
            "Kubernetes rows are consecutive minors, oldest first"
        );
        assert!(pair[0].released < pair[1].released && pair[0].end < pair[1].end);
        let months = pair[1].released.until(pair[1].end) / 30;
        assert!(
            (12..=15).contains(&months),
            "{}: about 14 months",
            pair[1].version
        );
    }
}

#[test]
fn dates_round_trip_and_the_supported_set_moves_with_today() {
    assert_eq!(Day::ymd(2026, 11, 23).to_string(), "2026-11-23");
    assert_eq!(Day::parse("2027-02-28"), Some(Day::ymd(2027, 2, 28)));
    assert_eq!(Day::parse("2027-13-01"), None);
    let today = Day::ymd(2026, 11, 23);
    assert_eq!(supported_kubernetes(today), ["1.35", "1.36", "1.37"]);
    assert_eq!(supported_kubernetes(Day::ymd(2027, 3, 1)), ["1.36", "1.37"]);
    assert_eq!(
        standing(Kubernetes, "1.34.2", today),
        Standing::Ended {
            end: Day::ymd(2026, 10, 28)
        }
    );
    assert_eq!(
        standing(Kubernetes, "v1.35", Day::ymd(2027, 1, 1)),
        Standing::EndingSoon {
            days: 58,
            end: Day::ymd(2027, 2, 28)
        }
    );
    assert_eq!(standing(Kubernetes, "1.36", today), Standing::Supported);
    assert_eq!(
        standing(Containerd, "1.7.28", today),
        Standing::Ended {
            end: Day::ymd(2026, 9, 30)
        }
    );
}

#[test]
fn notices_name_the_version_the_date_and_the_next_step() {
    let versions = [
        (Kubernetes, "1.35".to_string()),
        (Containerd, "2.3.4".to_string()),
        (
            Ubuntu,
            ubuntu_release("ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*").unwrap(),
        ),
    ];
    assert!(notices(&versions, Day::ymd(2026, 11, 23)).is_empty());
    let n = notices(&versions, Day::ymd(2027, 3, 1));
    assert_eq!(n.len(), 2, "{n:?}");
    assert_eq!(
        n[0].message,
        "Kubernetes 1.35 is out of upstream support since 2027-02-28"
    );
    assert!(
        n[0].help.contains("`ecoboot upgrade --to 1.36`"),
        "{}",
        n[0].help
    );
    assert_eq!(
        n[1].message,
        "Ubuntu 22.04 leaves upstream support in 60 day(s), on 2027-04-30"
    );
    assert_eq!(
        ubuntu_release("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*").as_deref(),
        Some("24.04")
    );
}

#[test]
fn runtime_rules_per_minor() {
    assert_eq!(min_containerd("1.35"), (1, 7));
    assert_eq!(min_containerd("1.36.4"), (2, 0));
    assert_eq!(pause_image("1.36"), "registry.k8s.io/pause:3.10.2");
    assert_eq!(pause_image("1.35"), "registry.k8s.io/pause:3.10.1");
    assert!(needs_cgroup_v2("1.35") && !needs_cgroup_v2("1.34"));
}
