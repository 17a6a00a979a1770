//! What the slots of one remote host share: how many of them are launching a worker at once
//! (sshd refuses connections beyond its `MaxStartups`, 10 by default), and how often launches
//! there have failed in a row, from which the back-off before the next one follows, and when
//! the host is given up (its slots stop; the rest of the pool goes on).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::Error;

/// Launches on one host at once, at most: under sshd's default `MaxStartups` of 10.
pub(crate) const LAUNCHES_AT_ONCE: usize = 8;
/// Launches failed in a row after which a host is given up.
pub(crate) const GIVE_UP_AFTER: u32 = 5;
/// The first back-off after a failed launch; it doubles with each failure, up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// One remote host's launches (see the module docs).
#[derive(Debug)]
pub(crate) struct HostHealth {
    name: String,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    launching: usize,
    failures: u32,
    given_up: Option<String>,
}

impl HostHealth {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        HostHealth {
            name: name.into(),
            state: Mutex::default(),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the host was given up, if it was.
    pub(crate) fn given_up(&self) -> Option<String> {
        self.lock().given_up.clone()
    }

    /// Gives the host up at once, saying why.
    pub(crate) fn give_up(&self, why: &str) {
        let mut state = self.lock();
        if state.given_up.is_none() {
            let why = format!("host {} given up: {why}", self.name);
            log::error!(target: "wasmpool::pool", "{why}; the rest of the pool goes on");
            state.given_up = Some(why);
        }
        self.freed.notify_all();
    }

    /// How long to wait before the next launch, after the failures so far.
    pub(crate) fn backoff(&self) -> Duration {
        let failures = self.lock().failures;
        match failures {
            0 => Duration::ZERO,
            n => (FIRST_BACKOFF * 2u32.saturating_pow(n - 1)).min(MAX_BACKOFF),
        }
    }

    /// Runs `launch` when fewer than [`LAUNCHES_AT_ONCE`] launches are under way on this
    /// host, and counts its failure (giving the host up after [`GIVE_UP_AFTER`] in a row) or
    /// its success. A host given up launches nothing more.
    pub(crate) fn launch<T>(&self, launch: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        {
            let mut state = self.lock();
            while state.launching >= LAUNCHES_AT_ONCE && state.given_up.is_none() {
                state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if let Some(why) = &state.given_up {
                return Err(Error::Spawn {
                    program: self.name.clone(),
                    detail: why.clone(),
                });
            }
            state.launching += 1;
        }
        let result = launch();
        let mut state = self.lock();
        state.launching -= 1;
        match &result {
            Ok(_) => state.failures = 0,
            Err(e) => {
                state.failures += 1;
                if state.failures >= GIVE_UP_AFTER && state.given_up.is_none() {
                    let why = format!(
                        "host {} given up after {} failed launches in a row, the last: {e}",
                        self.name, state.failures
                    );
                    log::error!(target: "wasmpool::pool", "{why}; the rest of the pool goes on");
                    state.given_up = Some(why);
                }
            }
        }
        drop(state);
        self.freed.notify_one();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_that_keeps_failing_is_given_up_with_growing_pauses() {
        let host = HostHealth::new("node9");
        let fail = || -> Result<(), Error> {
            Err(Error::Spawn {
                program: "ssh".into(),
                detail: "connection refused".into(),
            })
        };
        let mut pauses = Vec::new();
        for _ in 0..GIVE_UP_AFTER {
            assert!(host.given_up().is_none());
            let _ = host.launch(fail);
            pauses.push(host.backoff());
        }
        assert!(pauses.windows(2).all(|w| w[0] < w[1]), "{pauses:?}");
        let why = host.given_up().unwrap();
        assert!(
            why.contains("node9") && why.contains("connection refused"),
            "{why}"
        );
        assert!(host.launch(|| Ok(())).is_err());
        let healthy = HostHealth::new("node1");
        let _ = healthy.launch(fail);
        assert!(healthy.launch(|| Ok(())).is_ok());
        assert_eq!(healthy.backoff(), Duration::ZERO);
    }
}
