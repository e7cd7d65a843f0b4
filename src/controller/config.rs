//! Checking a [`ControllerConfig`] before anything runs: the flag parsers
//! refuse what a single value gets wrong, [`ControllerConfig::validate`]
//! what only the values together get wrong (and everything again, for a
//! configuration built in code).
//!
//! Invariant: a configuration that passes runs as asked — no value is
//! rounded, capped or otherwise quietly changed later (etcd grants leases in
//! whole seconds, so the TTL must be one).

use std::time::Duration;

use super::ControllerConfig;
use crate::registry::LeaseTimingError;

/// A controller configuration that cannot run as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No reconcile could ever run.
    #[error("--concurrency must be at least 1: it is how many reconciles of one loop run at once")]
    ZeroConcurrency,
    /// The lease TTL is not one etcd grants as asked.
    #[error("--lease-ttl")]
    LeaseTtl(#[source] LeaseTimingError),
    /// The renew deadline is not above zero and below the TTL.
    #[error("--renew-deadline")]
    RenewDeadline(#[source] LeaseTimingError),
}

impl ControllerConfig {
    /// Checks every value and how they fit together; the CLI runs this
    /// before connecting, [`Controller::new`](super::Controller::new) again.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        LeaseTimingError::check_ttl(self.lease_ttl).map_err(ConfigError::LeaseTtl)?;
        LeaseTimingError::check_renew_deadline(self.lease_ttl, self.renew_deadline)
            .map_err(ConfigError::RenewDeadline)?;
        Ok(())
    }
}

/// `--lease-ttl`: a duration etcd grants as asked (whole seconds, in range).
pub(super) fn parse_lease_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    LeaseTimingError::check_ttl(ttl).map_err(|error| error.to_string())?;
    Ok(ttl)
}

/// `--renew-deadline`: a duration above zero (below the TTL is checked by
/// [`ControllerConfig::validate`], which sees both).
pub(super) fn parse_renew_deadline(text: &str) -> Result<Duration, String> {
    let deadline = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if deadline.is_zero() {
        return Err("the renew deadline must be above 0s (and below --lease-ttl)".to_owned());
    }
    Ok(deadline)
}

/// `--concurrency`: a whole number of at least 1.
pub(super) fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => {
            Err("must be at least 1: it is how many reconciles of one loop run at once".into())
        }
        Ok(concurrency) => Ok(concurrency),
        Err(_) => Err(format!(
            "expected a whole number of at least 1, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        config: ControllerConfig,
    }

    /// Parses the flags and validates them as the CLI does: `Err` is the
    /// error line a user would see (clap adds a hint to try `--help` below it).
    fn check(flags: &[&str]) -> Result<ControllerConfig, String> {
        let args = std::iter::once("controller").chain(flags.iter().copied());
        let parsed = Flags::try_parse_from(args).map_err(|error| {
            error
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })?;
        parsed
            .config
            .validate()
            .map_err(|error| crate::telemetry::Chain(&error).to_string())?;
        Ok(parsed.config)
    }

    #[test]
    fn defaults_and_ordinary_values_pass() {
        let defaults = check(&[]).expect("defaults are valid");
        assert_eq!(defaults.lease_ttl, Duration::from_secs(10));
        assert_eq!(defaults.renew_deadline, Duration::from_secs(6));
        assert_eq!(defaults.concurrency, 4);
        let short = check(&[
            "--lease-ttl",
            "2s",
            "--renew-deadline",
            "1500ms",
            "--concurrency",
            "1",
        ])
        .expect("a 2s lease renewed within 1.5s");
        assert_eq!(short.renew_deadline, Duration::from_millis(1500));
        check(&["--lease-ttl", "1m", "--renew-deadline", "59s"]).expect("a minute");
    }

    #[test]
    fn values_that_cannot_run_as_asked_are_refused_naming_the_flag() {
        let table: &[(&[&str], &str)] = &[
            (&["--concurrency", "0"], "--concurrency"),
            (&["--concurrency=-1"], "--concurrency"),
            (&["--concurrency", "many"], "--concurrency"),
            (&["--lease-ttl", "0s"], "--lease-ttl"),
            (&["--lease-ttl", "1500ms"], "--lease-ttl"),
            (
                &["--lease-ttl", "900ms", "--renew-deadline", "500ms"],
                "--lease-ttl",
            ),
            (&["--lease-ttl", "9000000001s"], "--lease-ttl"),
            (&["--lease-ttl", "soon"], "--lease-ttl"),
            (&["--renew-deadline", "0s"], "--renew-deadline"),
            (
                &["--lease-ttl", "2s", "--renew-deadline", "2s"],
                "--renew-deadline",
            ),
            (
                &["--lease-ttl", "2s", "--renew-deadline", "6s"],
                "--renew-deadline",
            ),
            // The default deadline (6s) does not fit a shorter TTL.
            (&["--lease-ttl", "5s"], "--renew-deadline"),
        ];
        for (flags, named) in table {
            let message = check(flags).expect_err(&format!("{flags:?} is refused"));
            assert!(message.contains(named), "{flags:?}: {message}");
        }
    }

    #[test]
    fn the_messages_say_what_is_allowed() {
        let ttl = check(&["--lease-ttl", "1500ms"]).expect_err("refused");
        assert!(
            ttl.contains("whole number of seconds from 1s to 9000000000s"),
            "{ttl}"
        );
        assert!(
            ttl.contains("sub-second part is refused rather than rounded"),
            "{ttl}"
        );
        let deadline =
            check(&["--lease-ttl", "2s", "--renew-deadline", "2s"]).expect_err("refused");
        assert!(deadline.contains("below the lease TTL 2s"), "{deadline}");
        let concurrency = check(&["--concurrency", "0"]).expect_err("refused");
        assert!(concurrency.contains("at least 1"), "{concurrency}");
    }

    #[test]
    fn validate_checks_a_configuration_built_in_code() {
        let valid = check(&[]).expect("defaults");
        let with = |change: fn(&mut ControllerConfig)| {
            let mut config = valid.clone();
            change(&mut config);
            config.validate()
        };
        assert_eq!(
            with(|c| c.concurrency = 0),
            Err(ConfigError::ZeroConcurrency)
        );
        assert!(matches!(
            with(|c| c.lease_ttl = Duration::from_millis(1500)),
            Err(ConfigError::LeaseTtl(_))
        ));
        assert!(matches!(
            with(|c| c.renew_deadline = Duration::ZERO),
            Err(ConfigError::RenewDeadline(_))
        ));
        assert_eq!(with(|_| {}), Ok(()));
    }
}
