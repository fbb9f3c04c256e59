//! Stop-string matching over streamed text.
//!
//! Generated text arrives in pieces. [`StopMatcher`] emits text as soon as it
//! is certain that it cannot be part of a stop string, holds back any tail
//! that could still grow into one, and reports when a stop string appears
//! (the stop string and anything after it are dropped).

/// Streaming stop-string matcher. Held-back text always ends and starts on
/// UTF-8 char boundaries.
#[derive(Clone, Debug)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored.
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        StopMatcher { stops, held: String::new(), stopped: false }
    }

    /// Whether a stop string has been seen.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Feed newly generated text; returns (text safe to emit now, stopped).
    /// Text that could be the beginning of a stop string is held back until
    /// it is resolved; on a match, emits the text before the stop string and
    /// reports `stopped = true` (the stop string itself is not emitted).
    /// After a stop, further pushes return `("", true)`.
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.held.push_str(text);

        // Earliest complete occurrence of any stop string.
        let first = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(pos) = first {
            self.held.truncate(pos);
            self.stopped = true;
            return (std::mem::take(&mut self.held), true);
        }

        // Hold back the longest tail that is a proper prefix of some stop
        // string; everything before it can never be part of a match.
        let split = self.hold_point();
        let rest = self.held.split_off(split);
        let out = std::mem::replace(&mut self.held, rest);
        (out, false)
    }

    /// At end of generation: the held-back text (empty after a stop).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Smallest char-boundary index `i` such that `held[i..]` is a prefix of
    /// some stop string (`held.len()` if none).
    fn hold_point(&self) -> usize {
        let held = &self.held;
        let max_len = self.stops.iter().map(|s| s.len()).max().unwrap_or(0);
        // A held tail is a proper prefix, so it is shorter than the longest stop.
        let lo = held.len().saturating_sub(max_len.saturating_sub(1));
        (lo..held.len())
            .filter(|&i| held.is_char_boundary(i))
            .find(|&i| {
                let tail = &held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(stops.iter().map(|s| s.to_string()).collect())
    }

    /// Feeds all pieces; returns (all emitted text incl. flush, stopped).
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut sm = m(stops);
        let mut out = String::new();
        for p in pieces {
            let (t, stopped) = sm.push(p);
            out.push_str(&t);
            if stopped {
                return (out, true);
            }
        }
        out.push_str(&sm.flush());
        (out, false)
    }

    #[test]
    fn stop_split_across_pushes() {
        let mut sm = m(&["lo W"]);
        assert_eq!(sm.push("Hel"), ("He".to_string(), false)); // "l" could start "lo W"
        assert_eq!(sm.push("lo W"), ("l".to_string(), true));
        assert!(sm.stopped());
        assert_eq!(sm.push("more"), (String::new(), true));
        assert_eq!(sm.flush(), "");
    }

    #[test]
    fn stop_inside_one_push_drops_rest() {
        assert_eq!(run(&["</s>"], &["abc</s>def"]), ("abc".to_string(), true));
        assert_eq!(run(&["</s>"], &["</s>"]), (String::new(), true));
    }

    #[test]
    fn partial_prefix_released() {
        let mut sm = m(&["lo W"]);
        assert_eq!(sm.push("Hello"), ("Hel".to_string(), false));
        assert_eq!(sm.push(" "), (String::new(), false)); // "lo " still a prefix
        assert_eq!(sm.push("there"), ("lo there".to_string(), false));
        assert_eq!(sm.flush(), "");

        // Held-back prefix released at the end.
        let mut sm = m(&["STOP"]);
        assert_eq!(sm.push("xST"), ("x".to_string(), false));
        assert_eq!(sm.flush(), "ST");

        // Overlapping partial: "aab" with stop "ab" after "a" "a".
        assert_eq!(run(&["ab"], &["a", "a", "b", "c"]), ("a".to_string(), true));
        // Repeated prefix restarts: "ababc" with stop "abc".
        assert_eq!(run(&["abc"], &["ab", "ab", "c"]), ("ab".to_string(), true));
        assert_eq!(run(&["abc"], &["ab", "ab", "d"]), ("ababd".to_string(), false));
    }

    #[test]
    fn multibyte_chars() {
        // Stop "éé": the held tail must be whole chars.
        let mut sm = m(&["éé"]);
        assert_eq!(sm.push("caf"), ("caf".to_string(), false));
        assert_eq!(sm.push("é"), (String::new(), false));
        assert_eq!(sm.push("!"), ("é!".to_string(), false));
        assert_eq!(sm.push("ééx"), (String::new(), true));

        // Stop sharing a leading byte with emitted chars: "é" (C3 A9) vs "ã" (C3 A3).
        assert_eq!(run(&["ã世"], &["é", "ã", "世界"]), ("é".to_string(), true));
        assert_eq!(run(&["ã世"], &["é", "ã", "x"]), ("éãx".to_string(), false));
        // Emojis and CJK pass through intact when no stop matches.
        let (out, stopped) = run(&["🛑"], &["日本", "語🙂", "ok"]);
        assert_eq!((out.as_str(), stopped), ("日本語🙂ok", false));
        // Stop made of a 4-byte char.
        assert_eq!(run(&["🛑"], &["go 🙂 ", "🛑 tail"]), ("go 🙂 ".to_string(), true));
    }

    #[test]
    fn multiple_stop_strings() {
        let stops = ["\n\n", "User:", "###"];
        assert_eq!(run(&stops, &["Hi", " there\n", "User", ": x"]), ("Hi there\n".to_string(), true));
        assert_eq!(run(&stops, &["a#", "#", "#b"]), ("a".to_string(), true));
        assert_eq!(run(&stops, &["a\n", "\nb"]), ("a".to_string(), true));
        // Earliest occurrence wins, even if a later-listed stop appears first.
        assert_eq!(run(&["zz", "y"], &["xyzz"]), ("x".to_string(), true));
        // A prefix of one stop and a full match of another in the same push.
        assert_eq!(run(&["abcd", "bc"], &["abc"]), ("a".to_string(), true));
        // None of them match.
        assert_eq!(run(&stops, &["User", " said #1\n", "ok"]), ("User said #1\nok".to_string(), false));
    }

    #[test]
    fn empty_stop_list_passes_through() {
        let mut sm = m(&[]);
        assert_eq!(sm.push("Hel"), ("Hel".to_string(), false));
        assert_eq!(sm.push("lo é"), ("lo é".to_string(), false));
        assert_eq!(sm.flush(), "");
        // Empty strings in the list are ignored, not "always stop".
        let mut sm = m(&["", ""]);
        assert_eq!(sm.push("abc"), ("abc".to_string(), false));
    }
}
