//! The self-test's verdict for one adapter, as a small JSON file under the
//! cache directory (`$EMBER_HOME/gpu/<adapter key>/verdict.json`), so later
//! starts skip the test. A file that does not parse, or was written for
//! another key, is ignored (the test runs again and rewrites it).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::pipeline_cache::write_atomic;
use super::AdapterKey;
use crate::backend::wgpu::device::Tier;

/// Pass/fail of the baseline and of each tier tested so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub baseline: Option<Outcome>,
    pub tiers: BTreeMap<&'static str, Outcome>,
}

/// One golden run: passed or not, its error against the CPU, its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub pass: bool,
    pub nmse: f64,
    pub ms: f64,
    pub detail: String,
}

impl Outcome {
    fn to_json(&self) -> Value {
        json!({ "pass": self.pass, "nmse": self.nmse, "ms": self.ms, "detail": self.detail })
    }

    fn from_json(v: &Value) -> Option<Outcome> {
        Some(Outcome {
            pass: v.get("pass")?.as_bool()?,
            nmse: v.get("nmse")?.as_f64()?,
            ms: v.get("ms")?.as_f64()?,
            detail: v.get("detail")?.as_str()?.to_string(),
        })
    }
}

impl Verdict {
    pub fn tier(&self, t: Tier) -> Option<&Outcome> {
        self.tiers.get(t.name())
    }

    pub fn to_json(&self, key: &AdapterKey) -> Value {
        let tiers: serde_json::Map<String, Value> = self.tiers.iter().map(|(k, o)| (k.to_string(), o.to_json())).collect();
        json!({
            "key": key.to_json(),
            "baseline": self.baseline.as_ref().map(Outcome::to_json),
            "tiers": tiers,
        })
    }

    /// The verdict in `text`, when it parses and was written for `key`.
    pub fn parse(text: &str, key: &AdapterKey) -> Option<Verdict> {
        let v: Value = serde_json::from_str(text).ok()?;
        if v.get("key")? != &key.to_json() {
            return None;
        }
        let baseline = match v.get("baseline")? {
            Value::Null => None,
            b => Some(Outcome::from_json(b)?),
        };
        let mut tiers = BTreeMap::new();
        for (k, o) in v.get("tiers")?.as_object()? {
            let t = Tier::from_name(k)?;
            tiers.insert(t.name(), Outcome::from_json(o)?);
        }
        Some(Verdict { baseline, tiers })
    }

    /// The verdict stored at `path` for `key`; `None` (with a warning when a
    /// file was there) when missing, corrupt or for another key.
    pub fn load(path: &Path, key: &AdapterKey) -> Option<Verdict> {
        let text = std::fs::read_to_string(path).ok()?;
        let v = Verdict::parse(&text, key);
        if v.is_none() {
            log::warn!("gpu verdict {}: not a valid verdict for this adapter; ignored, the self-test runs again", path.display());
        }
        v
    }

    pub fn save(&self, path: &Path, key: &AdapterKey) {
        let text = serde_json::to_string_pretty(&self.to_json(key)).unwrap_or_default();
        if let Err(e) = write_atomic(path, text.as_bytes()) {
            log::warn!("gpu verdict: cannot write {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AdapterKey {
        AdapterKey {
            vendor: 0x10005,
            device: 0,
            name: "llvmpipe".into(),
            driver: "llvmpipe".into(),
            driver_info: "Mesa 22.3.6".into(),
            backend: "Vulkan".into(),
            ember: "0.1.0".into(),
        }
    }

    #[test]
    fn verdicts_round_trip_and_bad_files_are_ignored() {
        let o = |pass| Outcome { pass, nmse: 1e-12, ms: 12.5, detail: "ok".into() };
        let mut v = Verdict { baseline: Some(o(true)), tiers: BTreeMap::new() };
        v.tiers.insert("subgroup", o(false));
        let text = serde_json::to_string(&v.to_json(&key())).unwrap();
        assert_eq!(Verdict::parse(&text, &key()), Some(v.clone()));
        // Another driver version: not this adapter's verdict.
        let mut other = key();
        other.driver_info = "Mesa 24.0".into();
        assert_eq!(Verdict::parse(&text, &other), None);
        // Truncated, garbage, wrong types, an unknown tier: ignored.
        assert_eq!(Verdict::parse(&text[..text.len() / 2], &key()), None);
        assert_eq!(Verdict::parse("\u{0}\u{1}garbage", &key()), None);
        assert_eq!(Verdict::parse(&text.replace("\"pass\":false", "\"pass\":\"no\""), &key()), None);
        assert_eq!(Verdict::parse(&text.replace("subgroup", "warp"), &key()), None);
        // On disk: a corrupt file is ignored, and a save replaces it.
        let dir = std::env::temp_dir().join(format!("ember-verdict-test-{}", std::process::id()));
        let path = dir.join("verdict.json");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, b"{\"key\": tru").unwrap();
        assert_eq!(Verdict::load(&path, &key()), None);
        v.save(&path, &key());
        assert_eq!(Verdict::load(&path, &key()), Some(v));
        std::fs::remove_dir_all(&dir).ok();
    }
}
