//! Local or remote, per request: the policy and the choice it makes.

use std::fmt;
use std::str::FromStr;

use crate::memory_plan::MemoryLimit;
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
    /// local-first, and the prompt does not fit the context the local memory
    /// plan allows (`n_ctx`, lowered from the one asked for to fit `budget` bytes).
    ExceedsMemory { prompt_tokens: usize, n_ctx: usize, budget: u64 },
    /// local-first, and the local engine failed before any text (its error).
    LocalFailed(String),
}

impl RouteReason {
    /// A short stable code: `policy`, `fits`, `exceeds_context`, `exceeds_memory`, `local_failed`.
    pub fn code(&self) -> &'static str {
        match self {
            RouteReason::Policy => "policy",
            RouteReason::Fits => "fits",
            RouteReason::ExceedsContext { .. } => "exceeds_context",
            RouteReason::ExceedsMemory { .. } => "exceeds_memory",
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
            RouteReason::ExceedsMemory { prompt_tokens, n_ctx, budget } => write!(
                f,
                "the prompt ({prompt_tokens} tokens) would not fit the local memory plan (memory: context {n_ctx} fits the budget of {})",
                crate::memory_plan::mib(*budget)
            ),
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
/// `n_ctx` (before the local engine has had a chance to fail); `memory` when
/// the memory plan lowered that context from a larger one asked for.
pub fn decide(policy: RoutePolicy, prompt_tokens: usize, n_ctx: usize, memory: Option<&MemoryLimit>) -> RouteChoice {
    let (target, reason) = match policy {
        RoutePolicy::Local => (Target::Local, RouteReason::Policy),
        RoutePolicy::Remote => (Target::Remote, RouteReason::Policy),
        RoutePolicy::LocalFirst if prompt_tokens < n_ctx => (Target::Local, RouteReason::Fits),
        RoutePolicy::LocalFirst => match memory {
            Some(m) if prompt_tokens < m.wanted_ctx => {
                (Target::Remote, RouteReason::ExceedsMemory { prompt_tokens, n_ctx, budget: m.budget.bytes })
            }
            _ => (Target::Remote, RouteReason::ExceedsContext { prompt_tokens, n_ctx }),
        },
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
        let c = decide(RoutePolicy::LocalFirst, 100, 2048, None);
        assert_eq!((c.target, c.reason), (Target::Local, RouteReason::Fits));
        assert_eq!(decide(RoutePolicy::LocalFirst, 2047, 2048, None).target, Target::Local);
        let c = decide(RoutePolicy::LocalFirst, 2048, 2048, None);
        assert_eq!(c.target, Target::Remote);
        assert_eq!(c.reason, RouteReason::ExceedsContext { prompt_tokens: 2048, n_ctx: 2048 });
        assert_eq!(c.to_string(), "remote (the prompt (2048 tokens) does not fit the local context (2048))");
        assert_eq!(decide(RoutePolicy::Remote, 1, 2048, None).target, Target::Remote);
        assert_eq!(decide(RoutePolicy::Local, 1 << 20, 2048, None).target, Target::Local);
    }

    #[test]
    fn local_first_goes_remote_for_memory_when_the_plan_lowered_the_context() {
        use crate::memory_plan::{Budget, BudgetSource};
        let m = MemoryLimit { wanted_ctx: 4096, budget: Budget { bytes: 150 << 20, source: BudgetSource::Configured } };
        assert_eq!(decide(RoutePolicy::LocalFirst, 1000, 1024, Some(&m)).reason, RouteReason::Fits);
        let c = decide(RoutePolicy::LocalFirst, 2000, 1024, Some(&m));
        assert_eq!((c.target, c.reason.code()), (Target::Remote, "exceeds_memory"));
        assert!(c.to_string().contains("memory"), "{c}");
        // Past the context asked for, it is the context's fault, not memory's.
        let c = decide(RoutePolicy::LocalFirst, 5000, 1024, Some(&m));
        assert_eq!(c.reason.code(), "exceeds_context");
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
