//! Pieces shared by the HTML pages telestrip writes (the status page, the report): escaping,
//! one stylesheet, and a bar chart as inline SVG, so the pages need no scripts or assets.

use std::fmt::Write as _;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:62em;padding:0 1em;color:#1d2733}\
h1{margin-bottom:.2em}h2{margin-top:1.6em;font-size:1.15em}\
table{border-collapse:collapse;margin:.5em 0}th,td{padding:.3em .8em;border-bottom:1px solid #d5dbe3;text-align:left}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#116329}.bad{color:#a40e26;font-weight:600}.warn{color:#8a5a00}\
.badge{display:inline-block;padding:.25em .7em;border-radius:1em;font-weight:600}\
.badge.ok{background:#dafbe1}.badge.bad{background:#ffebe9}.badge.warn{background:#fff8c5}\
code{font-size:.9em}svg text{font-size:11px;fill:#445}";

/// A bar chart of `bars` (label, value) as inline SVG, `title` as its accessible name.
pub fn bar_chart(title: &str, bars: &[(String, u64)]) -> String {
    let width = 720.0_f64;
    let height = 180.0_f64;
    let top = 16.0;
    let bottom = 24.0;
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let slot = width / bars.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\">",
        escape(title)
    );
    let _ = write!(
        svg,
        "<line x1=\"0\" y1=\"{0}\" x2=\"{width}\" y2=\"{0}\" stroke=\"#99a\"/>",
        height - bottom
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let bar = (height - top - bottom) * (*value as f64) / max;
        let x = i as f64 * slot;
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" fill=\"#3465a4\"><title>{}: {value}</title></rect>",
            x + slot * 0.15,
            height - bottom - bar,
            slot * 0.7,
            escape(label)
        );
        if *value > 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{value}</text>",
                x + slot / 2.0,
                height - bottom - bar - 3.0
            );
        }
        // Every label when few, else every fourth, so they stay readable.
        if bars.len() <= 12 || i % 4 == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + slot / 2.0,
                height - 8.0,
                escape(label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn the_chart_has_one_bar_per_value_scaled_to_the_largest() {
        let svg = bar_chart("t", &[("a".into(), 1), ("b".into(), 4), ("c".into(), 0)]);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("height=\"140.0\""), "{svg}");
        assert!(svg.contains("<title>b: 4</title>"));
    }
}
