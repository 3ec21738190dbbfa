//! The Kubernetes API as the sources that read it connect to it: the pod
//! metadata of the containers source and the Events source. Both take the
//! same connection keys (`kubeconfig`, `api_url`, `connect_timeout`,
//! `watch_timeout`, `retry_max_backoff` in their own sections), build the
//! client the same way and back off the same way after a failed list or
//! watch, so that a kubeconfig or an API URL means the same in both.

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::setting::{key_error, ConfigError};

/// A section's connection keys.
pub struct Connection<'a> {
    /// A kubeconfig file (its current context); `None`: in-cluster.
    pub kubeconfig: Option<&'a Path>,
    /// The API server's URL, overriding the kubeconfig's or the in-cluster one.
    pub api_url: Option<&'a str>,
    pub connect_timeout: Duration,
    /// How long one watch request lasts.
    pub watch_timeout: Duration,
    /// The longest wait between two attempts.
    pub retry_max_backoff: Duration,
}

impl Connection<'_> {
    /// Checks the keys of section `section` (`sources.events`); errors name the key.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if let Some(path) = self.kubeconfig {
            crate::setting::readable(&format!("{section}.kubeconfig"), path)?;
        }
        if let Some(url) = self.api_url {
            if !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
                return Err(key_error(&format!("{section}.api_url"), format!("{url:?} is not an http(s) URL")));
            }
        }
        if !(1..=3600).contains(&self.watch_timeout.as_secs()) {
            return Err(key_error(&format!("{section}.watch_timeout"), "must be between 1s and 1h"));
        }
        if self.connect_timeout.is_zero() {
            return Err(key_error(&format!("{section}.connect_timeout"), "must be above zero"));
        }
        if self.retry_max_backoff < Backoff::FIRST {
            return Err(key_error(&format!("{section}.retry_max_backoff"), "must be at least 500ms"));
        }
        Ok(())
    }

    /// The client: the kubeconfig's current context, or the pod's service
    /// account. A watch may stay silent until it ends at `watch_timeout`, so
    /// reads time out only a little after that.
    pub async fn client(&self) -> Result<kube::Client, String> {
        let mut config = match self.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
            }
            None => kube::Config::incluster().map_err(|e| format!("in-cluster configuration: {e}"))?,
        };
        if let Some(url) = self.api_url {
            config.cluster_url = url.parse().map_err(|e| format!("api_url {url:?}: {e}"))?;
        }
        config.connect_timeout = Some(self.connect_timeout);
        config.read_timeout = Some(self.watch_timeout + Duration::from_secs(15));
        kube::Client::try_from(config).map_err(|e| format!("API client: {e}"))
    }
}

/// 500 ms, doubling up to `max`; back to 500 ms after a success. Also
/// kube-runtime's backoff, for its watchers.
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(500);

    pub fn new(max: Duration) -> Backoff {
        Backoff { next: Self::FIRST.min(max), max }
    }

    /// The next wait.
    pub fn delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    /// After a success: the next wait is the first again.
    pub fn reset(&mut self) {
        self.next = Self::FIRST.min(self.max);
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.delay())
    }
}

impl kube::runtime::utils::Backoff for Backoff {
    fn reset(&mut self) {
        Backoff::reset(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(3));
        let got: Vec<_> = (&mut b).take(5).map(|d| d.as_millis()).collect();
        assert_eq!(got, [500, 1000, 2000, 3000, 3000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(500)));
    }

    #[test]
    fn each_key_is_checked_and_named() {
        let ok = || Connection {
            kubeconfig: None,
            api_url: Some("https://127.0.0.1:6443"),
            connect_timeout: Duration::from_secs(5),
            watch_timeout: Duration::from_secs(290),
            retry_max_backoff: Duration::from_secs(30),
        };
        assert!(ok().validate("sources.events").is_ok());
        let cases: [(Connection, &str); 5] = [
            (Connection { api_url: Some("not a url"), ..ok() }, "sources.events.api_url"),
            (
                Connection { kubeconfig: Some(Path::new("/nonexistent/kubeconfig")), ..ok() },
                "sources.events.kubeconfig",
            ),
            (Connection { watch_timeout: Duration::ZERO, ..ok() }, "sources.events.watch_timeout"),
            (Connection { connect_timeout: Duration::ZERO, ..ok() }, "sources.events.connect_timeout"),
            (Connection { retry_max_backoff: Duration::from_millis(100), ..ok() }, "sources.events.retry_max_backoff"),
        ];
        for (c, key) in cases {
            let e = c.validate("sources.events").unwrap_err().to_string();
            assert!(e.contains(key), "{e} does not name {key}");
        }
    }
}
