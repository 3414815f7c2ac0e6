//! `spec.monitor`: the daemon's watchdog probe of every member.

use super::*;
use serde::Deserialize;
use std::time::Duration;

/// `spec.monitor`: how often the daemon probes every member for the watchdog's metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
    /// Between probes; `0s` turns the probe loop off.
    #[serde(default = "default_monitor_interval")]
    pub interval: AnyDuration,
}

pub(super) fn default_monitor_interval() -> AnyDuration {
    AnyDuration(Duration::from_secs(60))
}

impl Default for MonitorSpec {
    fn default() -> Self {
        Self {
            interval: default_monitor_interval(),
        }
    }
}
