//! Local or remote, per request: the policy and the choice it makes.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Where requests go (`EngineConfig::route`; `ember --route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutePolicy {
    /// Always the local engine (the default without a remote engine).
    Local,
    /// Always the remote engine (the default when one is configured).
    Remote,
    /// The local engine when the request fits its plan (the prompt fits the
    /// session's context) and it does not fail; the remote engine otherwise.
    /// A request that fits never touches the network, so it is answered
    /// with the network down.
    LocalFirst,
}

impl FromStr for RoutePolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "local" => Ok(RoutePolicy::Local),
            "remote" => Ok(RoutePolicy::Remote),
            "local-first" | "local_first" => Ok(RoutePolicy::LocalFirst),
            other => Err(Error::InvalidParam(format!("unknown route '{other}' (expected local, remote or local-first)"))),
        }
    }
}

impl fmt::Display for RoutePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoutePolicy::Local => "local",
            RoutePolicy::Remote => "remote",
            RoutePolicy::LocalFirst => "local-first",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Local,
    Remote,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Local => "local",
            Target::Remote => "remote",
        }
    }
}

/// Why a request went where it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteReason {
    /// The policy is `local` or `remote`: the caller chose.
    Policy,
    /// local-first, and the prompt fits the local context.
    Fits,
    /// local-first, and the prompt (plus one token to generate) does not fit the local context.
    ExceedsContext { prompt_tokens: usize, n_ctx: usize },
    /// local-first, and the local engine failed before any text (its error).
    LocalFailed(String),
}

impl RouteReason {
    /// A short stable code: `policy`, `fits`, `exceeds_context`, `local_failed`.
    pub fn code(&self) -> &'static str {
        match self {
            RouteReason::Policy => "policy",
            RouteReason::Fits => "fits",
            RouteReason::ExceedsContext { .. } => "exceeds_context",
            RouteReason::LocalFailed(_) => "local_failed",
        }
    }
}

impl fmt::Display for RouteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteReason::Policy => f.write_str("the route policy"),
            RouteReason::Fits => f.write_str("the prompt fits the local context"),
            RouteReason::ExceedsContext { prompt_tokens, n_ctx } => {
                write!(f, "the prompt ({prompt_tokens} tokens) does not fit the local context ({n_ctx})")
            }
            RouteReason::LocalFailed(e) => write!(f, "the local engine failed: {e}"),
        }
    }
}

/// Where one request went and why (in [`crate::GenerationStats::route`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChoice {
    pub target: Target,
    pub reason: RouteReason,
    /// The prompt's length in local tokens (the whole prompt, as the local
    /// tokenizer counts it); on a remote-only engine, the server's count
    /// (0 when it reports none).
    pub prompt_tokens: usize,
}

impl fmt::Display for RouteChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.target.as_str(), self.reason)
    }
}

/// The first choice for a prompt of `prompt_tokens` with a local context of
/// `n_ctx` (before the local engine has had a chance to fail).
pub fn decide(policy: RoutePolicy, prompt_tokens: usize, n_ctx: usize) -> RouteChoice {
    let (target, reason) = match policy {
        RoutePolicy::Local => (Target::Local, RouteReason::Policy),
        RoutePolicy::Remote => (Target::Remote, RouteReason::Policy),
        RoutePolicy::LocalFirst if prompt_tokens < n_ctx => (Target::Local, RouteReason::Fits),
        RoutePolicy::LocalFirst => (Target::Remote, RouteReason::ExceedsContext { prompt_tokens, n_ctx }),
    };
    RouteChoice { target, reason, prompt_tokens }
}

/// Whether a local failure under local-first is worth a remote attempt: not
/// when the request itself is wrong (it would be wrong there too) or was cancelled.
pub fn falls_back(e: &Error) -> bool {
    !matches!(e, Error::InvalidParam(_) | Error::InvalidConstraint(_) | Error::ChatTemplate(_) | Error::Cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_first_goes_remote_only_past_the_context() {
        let c = decide(RoutePolicy::LocalFirst, 100, 2048);
        assert_eq!((c.target, c.reason), (Target::Local, RouteReason::Fits));
        assert_eq!(decide(RoutePolicy::LocalFirst, 2047, 2048).target, Target::Local);
        let c = decide(RoutePolicy::LocalFirst, 2048, 2048);
        assert_eq!(c.target, Target::Remote);
        assert_eq!(c.reason, RouteReason::ExceedsContext { prompt_tokens: 2048, n_ctx: 2048 });
        assert_eq!(c.to_string(), "remote (the prompt (2048 tokens) does not fit the local context (2048))");
        assert_eq!(decide(RoutePolicy::Remote, 1, 2048).target, Target::Remote);
        assert_eq!(decide(RoutePolicy::Local, 1 << 20, 2048).target, Target::Local);
    }

    #[test]
    fn policies_parse() {
        assert_eq!("local-first".parse::<RoutePolicy>().unwrap(), RoutePolicy::LocalFirst);
        assert_eq!("remote".parse::<RoutePolicy>().unwrap().to_string(), "remote");
        assert!("cloud".parse::<RoutePolicy>().is_err());
    }

    #[test]
    fn only_engine_failures_fall_back() {
        assert!(falls_back(&Error::Backend("device lost".into())));
        assert!(falls_back(&Error::ContextFull { needed: 9, n_ctx: 8 }));
        assert!(!falls_back(&Error::InvalidParam("top_p".into())));
        assert!(!falls_back(&Error::Cancelled));
    }
}
