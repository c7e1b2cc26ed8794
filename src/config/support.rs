//! Support windows as data: which Kubernetes minors, containerd lines and Ubuntu releases are
//! inside their upstream support today, and which runtime each Kubernetes minor accepts. One
//! table, read by config validation (which minors `up` accepts), `plan` and `status` (warnings
//! 60 days before an end of support) and the node preflight (runtime against the minor).
//!
//! Updating it when Kubernetes releases a minor: add its row to [`WINDOWS`] with the release
//! date and the end of patch support from <https://kubernetes.io/releases/> (about 14 months
//! later), its pause image from kubeadm's `constants.PauseVersion`, and move the defaults
//! (`Kubernetes::default`, the shipped configs) when the newest minor has had its first patches.

use std::fmt;

/// A calendar day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day {
    /// Days since 1970-01-01.
    pub days: i64,
}

impl Day {
    /// The day `y-m-d` (proleptic Gregorian).
    pub const fn ymd(y: i64, m: i64, d: i64) -> Day {
        // Howard Hinnant's days_from_civil.
        let y = if m <= 2 { y - 1 } else { y };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Day {
            days: era * 146097 + doe - 719468,
        }
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Day> {
        let mut it = s.trim().splitn(3, '-').map(|p| p.parse::<i64>().ok());
        let (y, m, d) = (it.next()??, it.next()??, it.next()??);
        ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| Day::ymd(y, m, d))
    }

    /// Today: the pinned day (unit tests), else `ECOBOOT_TODAY` (`YYYY-MM-DD`, for tests and
    /// what-if checks), else the clock.
    pub fn today() -> Day {
        if let Some(day) = PINNED.get() {
            return *day;
        }
        if let Some(day) = std::env::var("ECOBOOT_TODAY")
            .ok()
            .and_then(|s| Day::parse(&s))
        {
            return day;
        }
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Day {
            days: secs.div_euclid(86_400),
        }
    }

    /// Days from `self` until `later` (negative when `later` is past).
    pub fn until(self, later: Day) -> i64 {
        later.days - self.days
    }
}

static PINNED: std::sync::OnceLock<Day> = std::sync::OnceLock::new();

/// Pins [`Day::today`] for this process (unit tests never read the clock); the first pin wins.
pub fn pin_today(day: Day) {
    let _ = PINNED.set(day);
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hinnant's civil_from_days.
        let z = self.days + 719468;
        let era = if z >= 0 { z } else { z - 146096 } / 146097;
        let doe = z - era * 146097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// What a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// A Kubernetes minor.
    Kubernetes,
    /// A containerd release line.
    Containerd,
    /// An Ubuntu LTS release.
    Ubuntu,
}

impl Component {
    /// The name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Kubernetes => "Kubernetes",
            Component::Containerd => "containerd",
            Component::Ubuntu => "Ubuntu",
        }
    }
}

/// One support window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// What it is about.
    pub component: Component,
    /// `major.minor` (Ubuntu: `24.04`).
    pub version: &'static str,
    /// Release day.
    pub released: Day,
    /// Last day of upstream (patch / standard) support.
    pub end: Day,
}

const fn row(component: Component, version: &'static str, released: Day, end: Day) -> Window {
    Window {
        component,
        version,
        released,
        end,
    }
}

use Component::{Containerd, Kubernetes, Ubuntu};

/// Every window ecoboot knows (`../shared/reference/versions-2026-11.md`, kubernetes.io/releases,
/// containerd's RELEASES.md, ubuntu.com/about/release-cycle).
pub const WINDOWS: &[Window] = &[
    row(
        Kubernetes,
        "1.33",
        Day::ymd(2025, 4, 23),
        Day::ymd(2026, 6, 28),
    ),
    row(
        Kubernetes,
        "1.34",
        Day::ymd(2025, 8, 27),
        Day::ymd(2026, 10, 28),
    ),
    row(
        Kubernetes,
        "1.35",
        Day::ymd(2025, 12, 17),
        Day::ymd(2027, 2, 28),
    ),
    row(
        Kubernetes,
        "1.36",
        Day::ymd(2026, 4, 22),
        Day::ymd(2027, 6, 28),
    ),
    row(
        Kubernetes,
        "1.37",
        Day::ymd(2026, 8, 26),
        Day::ymd(2027, 10, 28),
    ),
    row(
        Containerd,
        "1.7",
        Day::ymd(2023, 3, 10),
        Day::ymd(2026, 9, 30),
    ),
    row(
        Containerd,
        "2.3",
        Day::ymd(2026, 4, 28),
        Day::ymd(2028, 4, 28),
    ),
    row(
        Ubuntu,
        "22.04",
        Day::ymd(2022, 4, 21),
        Day::ymd(2027, 4, 30),
    ),
    row(
        Ubuntu,
        "24.04",
        Day::ymd(2024, 4, 25),
        Day::ymd(2029, 4, 30),
    ),
];

/// How many days before an end of support `plan` and `status` start warning.
pub const WARN_DAYS: i64 = 60;

/// The window of `component` `version` (`1.36`, `1.36.4` and `v1.36` all find `1.36`).
pub fn window(component: Component, version: &str) -> Option<&'static Window> {
    let minor = minor(version);
    WINDOWS
        .iter()
        .find(|w| w.component == component && w.version == minor)
}

/// `major.minor` of a version (`v1.36.4` → `1.36`).
pub fn minor(version: &str) -> String {
    let v = version.trim().trim_start_matches('v');
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The Kubernetes minors released and still supported on `today`, oldest first.
pub fn supported_kubernetes(today: Day) -> Vec<&'static str> {
    WINDOWS
        .iter()
        .filter(|w| w.component == Kubernetes && w.released <= today && today <= w.end)
        .map(|w| w.version)
        .collect()
}

/// Where a version stands on `today`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Supported for more than [`WARN_DAYS`].
    Supported,
    /// Supported for `days` more days (at most [`WARN_DAYS`]).
    EndingSoon {
        /// Days left.
        days: i64,
        /// The last day.
        end: Day,
    },
    /// Past its end of support since `end`.
    Ended {
        /// The last day.
        end: Day,
    },
    /// Not in the table.
    Unknown,
}

/// Where `component` `version` stands on `today`.
pub fn standing(component: Component, version: &str, today: Day) -> Standing {
    match window(component, version) {
        None => Standing::Unknown,
        Some(w) => match today.until(w.end) {
            d if d < 0 => Standing::Ended { end: w.end },
            d if d <= WARN_DAYS => Standing::EndingSoon {
                days: d,
                end: w.end,
            },
            _ => Standing::Supported,
        },
    }
}

/// The oldest containerd `major.minor` line a Kubernetes minor runs with (1.36 dropped
/// containerd 1.x: 1.35 was the last minor to support it).
pub fn min_containerd(kubernetes: &str) -> (u32, u32) {
    match minor_number(kubernetes) {
        Some(m) if m >= 36 => (2, 0),
        _ => (1, 7),
    }
}

/// The pause (sandbox) image kubeadm expects for a Kubernetes minor.
pub fn pause_image(kubernetes: &str) -> &'static str {
    match minor_number(kubernetes) {
        Some(m) if m >= 36 => "registry.k8s.io/pause:3.10.2",
        _ => "registry.k8s.io/pause:3.10.1",
    }
}

/// Kubelet 1.35 and later refuse cgroup v1.
pub fn needs_cgroup_v2(kubernetes: &str) -> bool {
    minor_number(kubernetes).is_some_and(|m| m >= 35)
}

/// A warning about a version at or near the end of its support window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    /// What it is about (e.g. `Kubernetes 1.35`).
    pub subject: String,
    /// What is wrong, with the date.
    pub message: String,
    /// What to do.
    pub help: String,
}

/// The notices for `versions` on `today`: every version within [`WARN_DAYS`] of its end of
/// support or past it, and every version the table does not know.
pub fn notices(versions: &[(Component, String)], today: Day) -> Vec<Notice> {
    let mut out = Vec::new();
    for (component, version) in versions {
        let subject = format!("{} {}", component.as_str(), minor(version));
        let message = match standing(*component, version, today) {
            Standing::Supported => continue,
            Standing::EndingSoon { days, end } => {
                format!("{subject} leaves upstream support in {days} day(s), on {end}")
            }
            Standing::Ended { end } => format!("{subject} is out of upstream support since {end}"),
            Standing::Unknown => format!("{subject} has no known support window"),
        };
        out.push(Notice {
            message,
            help: next_step(*component, version),
            subject,
        });
    }
    out
}

fn next_step(component: Component, version: &str) -> String {
    match component {
        Component::Kubernetes => {
            let next = minor_number(version).map(|m| format!("1.{}", m + 1));
            match next.filter(|n| window(Kubernetes, n).is_some()) {
                Some(n) => format!("move the cluster to Kubernetes {n}, one minor at a time (`ecoboot upgrade --to {n}`)"),
                None => "move the cluster to a supported Kubernetes minor".into(),
            }
        }
        Component::Containerd => {
            "pin a supported containerd release in spec.kubernetes.containerd (version, url, sha256)".into()
        }
        Component::Ubuntu => {
            "move spec.aws.ami.nameFilter to Ubuntu 24.04 (ubuntu-noble-24.04); nodes are replaced one at a time".into()
        }
    }
}

/// The Ubuntu release an AMI name filter selects (`…ubuntu-noble-24.04-amd64…` → `24.04`).
pub fn ubuntu_release(name_filter: &str) -> Option<String> {
    name_filter
        .split(['-', '/'])
        .find(|w| {
            w.len() == 5
                && w.as_bytes()[2] == b'.'
                && w.chars().filter(char::is_ascii_digit).count() == 4
        })
        .map(String::from)
}

fn minor_number(version: &str) -> Option<u32> {
    minor(version).split('.').nth(1)?.parse().ok()
}

#[cfg(test)]
#[path = "support_tests.rs"]
mod tests;
