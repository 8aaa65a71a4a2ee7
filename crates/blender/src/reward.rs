//! The reward map: feedback events → the per-request reward `R` (SPEC §2 item 5).

use crate::error::{BlenderError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Reward per feedback event; a request's reward `R` is the **sum over its feedback events**
/// (an event listed twice counts twice; a request with no feedback has `R = 0`).
///
/// The default is the post's: `closeup = +1`, `hide = −2`, lenient (other events are worth 0).
/// In **strict** mode an event missing from the map is an error naming the log line — list the
/// events you expect with reward 0 (`repin=0,click=0`) to accept them.
///
/// ```
/// use closeup_blender::RewardMap;
/// let mut map = RewardMap::default();
/// assert_eq!(map.reward(&["closeup".into(), "repin".into()]), Ok(1.0));
/// map.apply_spec("repin=0.5,click=0").unwrap();
/// map.strict = true;
/// assert_eq!(map.reward(&["closeup".into(), "repin".into(), "hide".into()]), Ok(-0.5));
/// assert!(map.reward(&["share".into()]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardMap {
    /// Reward of each event.
    pub events: BTreeMap<String, f32>,
    /// Whether an event not in `events` is an error (otherwise it is worth 0).
    pub strict: bool,
}

impl Default for RewardMap {
    fn default() -> Self {
        RewardMap {
            events: BTreeMap::from([("closeup".into(), 1.0), ("hide".into(), -2.0)]),
            strict: false,
        }
    }
}

impl RewardMap {
    /// A lenient map with exactly these rewards.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, f32)>) -> Self {
        RewardMap {
            events: pairs.into_iter().map(|(e, r)| (e.to_string(), r)).collect(),
            strict: false,
        }
    }

    /// Sets rewards from a `name=value,name=value` specification, on top of the current map
    /// (an event already present is overwritten; `closeup=0` neutralises one of the defaults).
    ///
    /// # Errors
    /// [`BlenderError::RewardSpec`] for an empty name, a missing `=`, a value that is not a
    /// finite number, or an event given twice.
    pub fn apply_spec(&mut self, spec: &str) -> Result<()> {
        let err = |reason: String| BlenderError::RewardSpec {
            spec: spec.to_string(),
            reason,
        };
        let mut seen = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| err(format!("{part:?} is not event=value")))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(err(format!("{part:?} has an empty event name")));
            }
            let value: f32 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite())
                .ok_or_else(|| err(format!("{part:?}: the reward must be a finite number")))?;
            if seen.insert(name.to_string(), value).is_some() {
                return Err(err(format!("event {name:?} is given twice")));
            }
        }
        self.events.extend(seen);
        Ok(())
    }

    /// Checks that every reward is finite.
    ///
    /// # Errors
    /// [`BlenderError::Config`] naming the event.
    pub fn validate(&self) -> Result<()> {
        match self.events.iter().find(|(_, r)| !r.is_finite()) {
            Some((e, r)) => Err(BlenderError::Config(format!(
                "the reward of event {e:?} must be finite, got {r}"
            ))),
            None => Ok(()),
        }
    }

    /// The event names the map knows (the allowed set in strict mode).
    pub fn known_events(&self) -> Vec<String> {
        self.events.keys().cloned().collect()
    }

    /// `R` of one request: the sum of its events' rewards.
    ///
    /// # Errors
    /// In strict mode, the first unknown event (returned as `Err(event)`).
    pub fn reward(&self, feedback: &[String]) -> std::result::Result<f32, String> {
        let mut total = 0.0;
        for e in feedback {
            match self.events.get(e) {
                Some(r) => total += r,
                None if self.strict => return Err(e.clone()),
                None => {}
            }
        }
        Ok(total)
    }

    /// `R` of every request. `lines` (one per request) are the log's line numbers used in error
    /// messages; without them the error names the 0-based request index.
    ///
    /// # Errors
    /// [`BlenderError::UnknownEvent`] for the first unknown event in strict mode, and
    /// [`BlenderError::Data`] if `lines` has the wrong length.
    pub fn rewards(&self, feedback: &[Vec<String>], lines: Option<&[usize]>) -> Result<Vec<f32>> {
        if let Some(l) = lines
            && l.len() != feedback.len()
        {
            return Err(BlenderError::Data(format!(
                "{} line numbers for {} requests",
                l.len(),
                feedback.len()
            )));
        }
        feedback
            .iter()
            .enumerate()
            .map(|(j, f)| {
                self.reward(f).map_err(|event| BlenderError::UnknownEvent {
                    location: match lines {
                        Some(l) => format!("line {}", l[j]),
                        None => format!("request {j}"),
                    },
                    event,
                    known: self.known_events(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_strictness() {
        let map = RewardMap::default();
        let fb = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(map.reward(&fb(&[])), Ok(0.0));
        assert_eq!(map.reward(&fb(&["closeup", "closeup", "hide"])), Ok(0.0));
        assert_eq!(map.reward(&fb(&["share"])), Ok(0.0));
        let strict = RewardMap {
            strict: true,
            ..RewardMap::default()
        };
        let err = strict
            .rewards(&[fb(&["closeup"]), fb(&["share"])], Some(&[3, 4]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 4: unknown feedback event \"share\"; the reward map knows [\"closeup\", \"hide\"]"
        );
        let err = strict.rewards(&[fb(&["x"])], None).unwrap_err();
        assert!(err.to_string().starts_with("request 0: unknown"));
    }

    #[test]
    fn specs() {
        let mut map = RewardMap::default();
        map.apply_spec(" repin = 0.5 , hide=-3,").unwrap();
        assert_eq!(map.events["repin"], 0.5);
        assert_eq!(map.events["hide"], -3.0);
        assert_eq!(map.events["closeup"], 1.0);
        for bad in ["repin", "=1", "repin=x", "repin=inf", "a=1,a=2"] {
            let e = RewardMap::default().apply_spec(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
