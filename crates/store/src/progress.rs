//! The stages' progress bars: one look, drawn on stderr, and rates with a sensible number
//! of digits (`83.1/s`, not indicatif's `83.0911/s`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// A bar of `total` steps drawn with `template` (indicatif's keys, plus `{rate}`: steps per
/// second, see [`rate`]), or a hidden one when `enabled` is false.
pub fn bar(enabled: bool, total: u64, template: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid progress template")
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}/s", rate(state.per_sec()));
                },
            ),
    );
    bar
}

/// A rate with three significant digits at most, and no decimals from 100 up: `0.123`,
/// `8.35`, `83.1`, `831`, `8310`.
pub fn rate(per_second: f64) -> String {
    if !per_second.is_finite() || per_second <= 0.0 {
        return "0".to_owned();
    }
    let decimals = if per_second >= 100.0 {
        0
    } else if per_second >= 10.0 {
        1
    } else if per_second >= 1.0 {
        2
    } else {
        3
    };
    format!("{per_second:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn rates_keep_three_significant_digits() {
        assert_eq!(rate(83.0911), "83.1");
        assert_eq!(rate(8.34567), "8.35");
        assert_eq!(rate(831.4), "831");
        assert_eq!(rate(8314.9), "8315");
        assert_eq!(rate(0.12345), "0.123");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(f64::NAN), "0");
    }
}
