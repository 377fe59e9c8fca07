//! Keyframe schedules: a per-frame number of a job (zoom, rotation, step
//! size, …) that changes over the render, written in Deforum's syntax so its
//! schedules can be pasted in: `0:(1.02), 120:(1.05), 240:(1.0)`.
//!
//! Each key's value is an expression of the frame number `t` (and of
//! `max_f`, the last frame's number), e.g. `0:(1 + 0.01*sin(2*pi*t/120))`.
//! A schedule is parsed once, when the job is read, into keys holding small
//! expression trees; a frame's value is then a cheap, pure evaluation.
//! Schedules are typed by hand, so every error names the setting and the
//! column.
//!
//! - `parse.rs`: the text read into keys (tokens, a recursive-descent
//!   parser, the nesting limit).
//! - `expr.rs`: a key's expression, folded and evaluated.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

mod expr;
mod parse;

use expr::Expr;
use parse::Parsed;

/// A schedule that does not parse, or a frame's value that is not allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// The text is not a schedule.
    #[error("{}bad schedule at column {column}: {problem}", prefix(.name))]
    Syntax {
        /// The setting, e.g. `zoom` (empty when the caller does not know it,
        /// as for a command-line flag, which clap names itself).
        name: String,
        /// 1-based character column of the problem within the schedule.
        column: usize,
        /// What is wrong or what was expected there.
        problem: String,
    },
    /// A frame's value is NaN or infinite.
    #[error(
        "{name} at frame {frame} = {value} is not a finite number; change the schedule so that every frame gets one (an expression that divides by zero or overflows does not)"
    )]
    NotFinite {
        /// The setting.
        name: String,
        /// The frame.
        frame: u64,
        /// The value there.
        value: f64,
    },
    /// A frame's value is outside what the setting allows.
    #[error("{name} at frame {frame} = {value} is out of range: {expected}")]
    OutOfRange {
        /// The setting.
        name: String,
        /// The first frame out of range.
        frame: u64,
        /// The value there.
        value: f64,
        /// What is allowed.
        expected: String,
    },
}

/// `"zoom: "`, or nothing for an unnamed schedule.
fn prefix(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!("{name}: ")
    }
}

/// A per-frame number: a constant, or keys with values in between
/// interpolated linearly.
///
/// A frame's value, at frame `t` between keys `a` and `b`, is
/// `va + (vb - va) * (t - a) / (b - a)`, where `va` and `vb` are both keys'
/// expressions evaluated at `t`; at or after the last key it is the last
/// key's expression at `t`, and before the first key the first key's value
/// at its own frame holds. For keys that are plain numbers this is
/// Deforum's schedule exactly; Deforum instead follows an expression key's
/// expression alone up to the next key and jumps there, which this
/// smooths.
///
/// Integer settings (iterations, jitter) round the value themselves, after
/// [`Schedule::check_range`] has proved every frame's value in range.
///
/// Serialises back to the text it was read from, so a job file round-trips;
/// a plain number, whether written as a number or as text, is kept (and
/// written back) as a number.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// What the schedule was read from.
    source: Source,
    /// At least one key, frames strictly increasing.
    keys: Vec<Key>,
}

/// The form a schedule was written in, kept to write it back.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// A plain number.
    Number(f64),
    /// Keyframes, as written.
    Text(String),
}

/// One key: the schedule passes through `value` (evaluated at the frame)
/// at frame `frame`.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    /// The key's frame number.
    frame: u64,
    /// The key's value, evaluated at the current frame.
    value: Expr,
}

impl Schedule {
    /// Parses `text`; errors name the setting `name` (e.g. `zoom`).
    pub fn parse(name: &str, text: &str) -> Result<Self, ScheduleError> {
        let syntax = |(column, problem)| ScheduleError::Syntax {
            name: name.to_string(),
            column,
            problem,
        };
        match parse::parse(text).map_err(syntax)? {
            Parsed::Number(value) => Ok(value.into()),
            Parsed::Keys(keys) => Ok(Self {
                source: Source::Text(text.to_string()),
                keys,
            }),
        }
    }

    /// The value at frame `frame` of a job of `frames` frames (`max_f` is
    /// `frames - 1`, as in Deforum). Pure f64 arithmetic on the parsed
    /// expressions: the same inputs give the same bits.
    pub fn value_at(&self, frame: u64, frames: u32) -> f64 {
        let t = frame as f64;
        let max_f = f64::from(frames) - 1.0;
        let next = self.keys.partition_point(|k| k.frame <= frame);
        if next == 0 {
            let first = &self.keys[0];
            return first.value.eval(first.frame as f64, max_f);
        }
        let a = &self.keys[next - 1];
        let va = a.value.eval(t, max_f);
        match self.keys.get(next) {
            Some(b) if a.frame < frame => {
                let vb = b.value.eval(t, max_f);
                let w = (t - a.frame as f64) / (b.frame - a.frame) as f64;
                va + (vb - va) * w
            }
            _ => va,
        }
    }

    /// The value of every frame, when it is the same on every frame of any
    /// job (a plain number, or keys whose values are all that number).
    pub fn constant(&self) -> Option<f64> {
        let first = self.keys[0].value.number()?;
        self.keys[1..]
            .iter()
            .all(|k| k.value.number() == Some(first))
            .then_some(first)
    }

    /// Whether the values depend on the job's frame count (`max_f`): such
    /// a schedule's frames change when a job is given more frames.
    pub fn uses_max_f(&self) -> bool {
        self.keys.iter().any(|k| k.value.uses_max_f())
    }

    /// Checks every frame `0..frames` of a job of `frames` frames: its value
    /// must be finite and pass `ok`; `expected` says what `ok` allows, for
    /// the error. The first bad frame is named.
    pub fn check_range(
        &self,
        name: &str,
        frames: u32,
        ok: impl Fn(f64) -> bool,
        expected: &str,
    ) -> Result<(), ScheduleError> {
        let checked = if self.constant().is_some() {
            frames.min(1)
        } else {
            frames
        };
        for frame in 0..u64::from(checked) {
            let value = self.value_at(frame, frames);
            if !value.is_finite() {
                return Err(ScheduleError::NotFinite {
                    name: name.to_string(),
                    frame,
                    value,
                });
            }
            if !ok(value) {
                return Err(ScheduleError::OutOfRange {
                    name: name.to_string(),
                    frame,
                    value,
                    expected: expected.to_string(),
                });
            }
        }
        Ok(())
    }
}

impl From<f64> for Schedule {
    /// A constant schedule, as a default or a plain number in a job file.
    fn from(value: f64) -> Self {
        Self {
            source: Source::Number(value),
            keys: vec![Key {
                frame: 0,
                value: Expr::Number(value),
            }],
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// Parses an unnamed schedule, as for a command-line flag (clap's error
    /// names the flag).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse("", s)
    }
}

impl fmt::Display for Schedule {
    /// The schedule as it was written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Number(v) => write!(f, "{v}"),
            Source::Text(text) => f.write_str(text),
        }
    }
}

impl Serialize for Schedule {
    /// A number as a number (a whole one as an integer, as a job file
    /// writes iterations), keys as the text they were read from.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.source {
            Source::Number(v) if v.fract() == 0.0 && v.abs() < 1e15 => {
                serializer.serialize_i64(*v as i64)
            }
            Source::Number(v) => serializer.serialize_f64(*v),
            Source::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for Schedule {
    /// From a number or a string.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScheduleVisitor)
    }
}

/// Reads a schedule from a number or a string.
struct ScheduleVisitor;

impl Visitor<'_> for ScheduleVisitor {
    type Value = Schedule;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a schedule like \"0:(1.0), 120:(1.05)\"")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Schedule, E> {
        Ok(v.into())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Schedule, E> {
        Ok((v as f64).into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Schedule, E> {
        Ok((v as f64).into())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Schedule, E> {
        v.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Schedule {
        Schedule::parse("zoom", text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn error(text: &str) -> String {
        Schedule::parse("zoom", text).expect_err(text).to_string()
    }

    /// Values at `frames` of a 100-frame job.
    fn values(s: &Schedule, frames: &[u64]) -> Vec<f64> {
        frames.iter().map(|&f| s.value_at(f, 100)).collect()
    }

    #[test]
    fn a_plain_number_is_a_constant() {
        for (text, want) in [
            ("1.02", 1.02),
            (" -1.5e-2 ", -0.015),
            ("+3", 3.0),
            (".5", 0.5),
        ] {
            let s = parse(text);
            assert_eq!(s.constant(), Some(want), "{text}");
            assert_eq!(values(&s, &[0, 7, 1000]), [want; 3]);
            assert_eq!(s, Schedule::from(want));
        }
        assert_eq!(parse("5.").constant(), Some(5.0));
        assert_eq!(parse("2E+3").constant(), Some(2000.0));
    }

    #[test]
    fn keys_interpolate_linearly_and_hold_outside() {
        let s = parse("10:(1.0), 20:(2.0), 40:(1.0)");
        assert_eq!(s.constant(), None);
        assert_eq!(
            values(&s, &[0, 9, 10, 15, 20, 25, 30, 40, 41, 99]),
            [1.0, 1.0, 1.0, 1.5, 2.0, 1.75, 1.5, 1.0, 1.0, 1.0]
        );
        // Frames past the job's end still evaluate (the last key holds).
        assert_eq!(s.value_at(1_000_000, 100), 1.0);
        assert_eq!(parse("0:(1.5)").constant(), Some(1.5));
        assert_eq!(parse("0:(2), 50:(1+1)").constant(), Some(2.0));
    }

    #[test]
    fn whitespace_anywhere_and_a_trailing_comma() {
        let tight = parse("0:(1),100:(2)");
        let loose = parse(" 0 : ( 1 ) ,\n\t100 :(2 ) , ");
        assert_eq!(values(&tight, &[0, 25, 100]), values(&loose, &[0, 25, 100]));
        assert_eq!(values(&loose, &[0, 25, 100]), [1.0, 1.25, 2.0]);
        // Only the text differs.
        assert_ne!(tight, loose);
    }

    #[test]
    fn expressions_of_t_and_max_f() {
        let s = parse("0:(1 + 0.01*sin(2*pi*t/120))");
        assert_eq!(s.constant(), None);
        assert!(!s.uses_max_f());
        for t in [0u64, 30, 45, 90, 1000] {
            let want = 1.0 + 0.01 * (2.0 * std::f64::consts::PI * t as f64 / 120.0).sin();
            assert_eq!(s.value_at(t, 100), want);
        }
        // max_f is the last frame's number, as in Deforum.
        let ramp = parse("0:(t/max_f)");
        assert!(ramp.uses_max_f());
        assert_eq!(ramp.value_at(0, 11), 0.0);
        assert_eq!(ramp.value_at(5, 11), 0.5);
        assert_eq!(ramp.value_at(10, 11), 1.0);
        // Between keys, both keys' expressions at the frame, interpolated.
        let s = parse("0:(t), 10:(100 - t)");
        assert_eq!(
            values(&s, &[0, 5, 10, 20]),
            [0.0, 0.5 * 5.0 + 0.5 * 95.0, 90.0, 80.0]
        );
        // Before the first key, its value at its own frame.
        assert_eq!(parse("10:(t*2)").value_at(3, 100), 20.0);
    }

    #[test]
    fn operators_and_functions() {
        let cases = [
            ("1 + 2 * 3", 7.0),
            ("(1 + 2) * 3", 9.0),
            ("2 ^ 3 ^ 2", 512.0),
            ("2 ** 3", 8.0),
            ("-2 ^ 2", -4.0),
            ("2 ^ -1", 0.5),
            ("--3", 3.0),
            ("7 % 3", 1.0),
            ("-7 % 3", 2.0),
            ("7 % -3", -2.0),
            ("10 / 4 - 1", 1.5),
            ("8 - 2 - 1", 5.0),
            ("16 / 4 / 2", 2.0),
            ("1e-3 * 1E3", 1.0),
            ("abs(-2) + sqrt(9) + exp(0) + ln(e) + log10(100)", 9.0),
            ("floor(1.5) + ceil(1.2) + round(2.5) + round(-2.5)", 3.0),
            ("min(3, 4) + max(3, 4) + pow(2, 10)", 1031.0),
            ("clamp(5, 0, 2) + clamp(-1, 0, 2) + clamp(1, 0, 2)", 3.0),
            ("atan2(1, 1) * 4 / pi", 1.0),
            (
                "sin(0) + cos(0) + tan(0) + asin(0) + acos(1) + atan(0)",
                1.0,
            ),
        ];
        for (expr, want) in cases {
            let got = parse(&format!("0:({expr})")).value_at(0, 1);
            assert!((got - want).abs() < 1e-12, "{expr} = {got}, not {want}");
        }
    }

    #[test]
    fn syntax_errors_name_the_setting_column_and_problem() {
        let cases = [
            (
                "",
                "column 1: the schedule is empty: write a number or keys like 0:(1.0)",
            ),
            (
                "  ",
                "column 1: the schedule is empty: write a number or keys like 0:(1.0)",
            ),
            (
                "0:(1.02), 120:(1.05",
                "column 20: expected ')' after the value of key 120",
            ),
            (
                "0:(1 + (2)",
                "column 11: expected ')' after the value of key 0",
            ),
            (
                "0:(1 + (2",
                "column 10: expected ')' to close the '(' at column 8",
            ),
            ("0:(1), 60 (2)", "column 11: expected ':' after key 60"),
            ("0 (1)", "column 3: expected ':' after key 0"),
            ("0:1.02", "column 3: expected '(' before the value of key 0"),
            (
                "0:(1), 120:(2), 60:(3)",
                "column 17: keys must increase: 60 after 120",
            ),
            ("0:(1), 60:(2), 60:(3)", "column 16: key 60 appears twice"),
            ("1.5:(2)", "column 1: key 1.5 is not a whole frame number"),
            ("1e3:(2)", "column 1: key 1e3 is not a whole frame number"),
            (
                "-5:(2)",
                "column 1: expected a key: a frame number like 0 or 120",
            ),
            (
                "99999999999999999999:(1)",
                "column 1: key 99999999999999999999 is too large",
            ),
            ("0:(sinn(t))", "column 4: unknown function \"sinn\""),
            (
                "0:(1 + x)",
                "column 8: unknown variable \"x\" (use t or max_f)",
            ),
            ("0:(sin)", "column 4: \"sin\" is a function: write sin(…)"),
            ("0:(atan2(1))", "column 4: atan2 takes 2 arguments, not 1"),
            ("0:(sqrt())", "column 4: sqrt takes 1 argument, not 0"),
            (
                "0:(min(1 2))",
                "column 10: expected ',' or ')' in the arguments of min",
            ),
            (
                "0:()",
                "column 4: expected a number, t, max_f, a function or '('",
            ),
            (
                "0:(1 +)",
                "column 7: expected a number, t, max_f, a function or '('",
            ),
            (
                "0:(1) x",
                "column 7: expected ',' or the end after the value of key 0",
            ),
            (
                "0:(1)),",
                "column 6: expected ',' or the end after the value of key 0",
            ),
            (
                "0:(1),,",
                "column 7: expected a key: a frame number like 0 or 120",
            ),
            ("1.02 x", "column 6: expected ':' after key 1.02"),
            ("0:(1e400)", "column 4: number 1e400 is too large"),
            ("1e400", "column 1: number 1e400 is too large"),
            ("0:(2 $ 3)", "column 6: unexpected character '$'"),
            ("0:(é)", "column 4: unexpected character 'é'"),
            ("ü 0:(1 ~ 2)", "column 1: unexpected character 'ü'"),
        ];
        for (text, want) in cases {
            assert_eq!(
                error(text),
                format!("zoom: bad schedule at {want}"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("0:({}1{})", "(".repeat(10_000), ")".repeat(10_000));
        assert!(error(&deep).contains("nested too deeply (more than 32 levels)"));
        let signs = format!("0:({}1)", "-".repeat(10_000));
        assert!(error(&signs).contains("nested too deeply"));
        // A long flat sum is fine: it evaluates as a loop.
        let sum = format!("0:(0{})", "+1".repeat(100_000));
        assert_eq!(parse(&sum).constant(), Some(100_000.0));
        let sum_t = format!("0:(0{})", "+t".repeat(100_000));
        assert_eq!(parse(&sum_t).value_at(2, 10), 200_000.0);
    }

    #[test]
    fn an_unnamed_schedule_errors_without_a_name() {
        let e = "0:(1".parse::<Schedule>().expect_err("unbalanced");
        assert_eq!(
            e.to_string(),
            "bad schedule at column 5: expected ')' after the value of key 0"
        );
        assert_eq!(
            e,
            ScheduleError::Syntax {
                name: String::new(),
                column: 5,
                problem: "expected ')' after the value of key 0".into()
            }
        );
    }

    #[test]
    fn range_checks_name_the_first_bad_frame() {
        let s = parse("0:(1.0), 100:(3.0)");
        let in_zoom_range = |z: f64| (0.5..=2.0).contains(&z);
        let e = s
            .check_range("zoom", 200, in_zoom_range, "0.5 to 2.0 per frame")
            .expect_err("frame 51 is 2.02");
        assert_eq!(
            e.to_string(),
            "zoom at frame 51 = 2.02 is out of range: 0.5 to 2.0 per frame"
        );
        s.check_range("zoom", 51, in_zoom_range, "0.5 to 2.0 per frame")
            .expect("frames 0 to 50 are in range");
        let no_frames = s.check_range("zoom", 0, |_| false, "nothing");
        assert_eq!(no_frames, Ok(()));
    }

    #[test]
    fn non_finite_values_are_refused() {
        let nan = parse("0:(1), 10:(0/0)");
        let e = nan.check_range("zoom", 20, |_| true, "anything");
        assert_eq!(
            e.expect_err("NaN").to_string(),
            "zoom at frame 1 = NaN is not a finite number; change the schedule so that every frame gets one (an expression that divides by zero or overflows does not)"
        );
        let inf = parse("0:(exp(t * 100))");
        assert_eq!(
            inf.check_range("zoom", 20, |_| true, "anything")
                .expect_err("inf")
                .to_string(),
            "zoom at frame 8 = inf is not a finite number; change the schedule so that every frame gets one (an expression that divides by zero or overflows does not)"
        );
        let constant_nan = Schedule::from(f64::NAN);
        assert!(constant_nan.check_range("zoom", 1, |_| true, "").is_err());
        assert_eq!(
            parse("0:(0/0)")
                .check_range("zoom", 1, |_| true, "")
                .expect_err("NaN")
                .to_string(),
            "zoom at frame 0 = NaN is not a finite number; change the schedule so that every frame gets one (an expression that divides by zero or overflows does not)"
        );
    }

    /// A job-file section with schedules, as TOML and JSON carry it.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Settings {
        zoom: Schedule,
        rotate: Schedule,
        jitter: Schedule,
    }

    #[test]
    fn serde_keeps_numbers_as_numbers_and_text_as_written() {
        let toml_text =
            "zoom = \"0:(1.02), 120:(1.05 + 0.01*sin(t)),\"\nrotate = 0.5\njitter = 32\n";
        let settings: Settings = toml::from_str(toml_text).expect("valid");
        assert_eq!(settings.rotate.constant(), Some(0.5));
        assert_eq!(settings.jitter.constant(), Some(32.0));
        assert_eq!(
            settings.zoom.value_at(60, 200),
            0.5 * 1.02 + 0.5 * (1.05 + 0.01 * 60f64.sin())
        );
        let written = toml::to_string(&settings).expect("serialises");
        assert_eq!(
            written,
            "zoom = \"0:(1.02), 120:(1.05 + 0.01*sin(t)),\"\nrotate = 0.5\njitter = 32\n"
        );
        assert_eq!(
            toml::from_str::<Settings>(&written).expect("valid"),
            settings
        );

        let json = serde_json::to_string(&settings).expect("serialises");
        assert_eq!(
            json,
            r#"{"zoom":"0:(1.02), 120:(1.05 + 0.01*sin(t)),","rotate":0.5,"jitter":32}"#
        );
        assert_eq!(
            serde_json::from_str::<Settings>(&json).expect("valid"),
            settings
        );

        // A plain number written as text is kept as a number.
        let quoted: Schedule = serde_json::from_str(r#""1.5""#).expect("valid");
        assert_eq!(quoted, Schedule::from(1.5));
        assert_eq!(serde_json::to_string(&quoted).expect("serialises"), "1.5");
        assert_eq!(parse("0:(1)").to_string(), "0:(1)");
        assert_eq!(Schedule::from(1.25).to_string(), "1.25");
    }

    #[test]
    fn serde_errors_carry_the_schedule_error() {
        let e = toml::from_str::<Settings>("zoom = \"0:(sinn(t))\"\nrotate = 0\njitter = 0\n")
            .expect_err("unknown function");
        assert!(
            e.to_string()
                .contains("bad schedule at column 4: unknown function \"sinn\""),
            "{e}"
        );
        let e = serde_json::from_str::<Schedule>("true").expect_err("a bool");
        assert!(e.to_string().contains("a number or a schedule like"), "{e}");
    }

    #[test]
    fn evaluation_is_deterministic() {
        let s = parse("0:(1), 37:(1 + 0.3*sin(t/7) ^ 2), 90:(cos(t) % 0.25)");
        let a: Vec<u64> = (0..200).map(|f| s.value_at(f, 200).to_bits()).collect();
        let b: Vec<u64> = (0..200)
            .map(|f| s.clone().value_at(f, 200).to_bits())
            .collect();
        assert_eq!(a, b);
    }
}
