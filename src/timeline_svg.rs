//! A run's [`Timeline`] as an SVG Gantt chart (plain SVG text, no browser): one bar per node,
//! grouped by region, waits on AWS shaded apart from API work, the critical path highlighted,
//! a labelled time axis. Conventions: each bar is a `rect` of class `bar` carrying a `<title>`
//! with its node id; critical bars also have the class `critical`; waits are `rect`s of class
//! `wait`.

use crate::engine::timeline::{Bar, Timeline};
use std::fmt::Write;

const WIDTH: f64 = 1280.0;
const LABEL: f64 = 300.0;
const RIGHT: f64 = 130.0;
const ROW: f64 = 18.0;
const HEADER: f64 = 26.0;
const TOP: f64 = 74.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `45s`, `3m`, `12m30s`, `1h05m`.
pub fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 if s.is_multiple_of(60) => format!("{}m", s / 60),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A bar's length: tenths under ten seconds (`0.4s`), else as [`duration`].
fn length(secs: f64) -> String {
    if secs < 10.0 {
        format!("{secs:.1}s")
    } else {
        duration(secs)
    }
}

/// A tick step giving at most ~12 ticks.
fn step(total: f64) -> f64 {
    const STEPS: &[f64] = &[
        0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    ];
    STEPS.iter().copied().find(|s| total / s <= 12.0).unwrap_or(7200.0)
}

/// Regions in the order given (primary first), then any other.
pub fn render(t: &Timeline, regions: &[&str]) -> String {
    let mut groups: Vec<(String, Vec<&Bar>)> = regions.iter().map(|r| (r.to_string(), vec![])).collect();
    for b in &t.bars {
        match groups.iter_mut().find(|(r, _)| *r == b.region) {
            Some((_, v)) => v.push(b),
            None => groups.push((b.region.clone(), vec![b])),
        }
    }
    groups.retain(|(_, v)| !v.is_empty());
    let rows: usize = groups.iter().map(|(_, v)| v.len()).sum();
    let height = TOP + groups.len() as f64 * HEADER + rows as f64 * ROW + 40.0;
    let total = t.bars.iter().map(|b| b.end_s).fold(t.elapsed_s, f64::max).max(0.001);
    let chart = WIDTH - LABEL - RIGHT;
    let x = |s: f64| LABEL + s / total * chart;
    let critical: Vec<&str> = t.bars.iter().filter(|b| b.critical).map(|b| b.node.as_str()).collect();

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" font-size="11">"#
    );
    s.push_str(
        "<style>\
         .bar{fill:#4e79a7}.bar.critical{fill:#d62728}.bar.failed{fill:#7f7f7f}\
         .wait{fill:#ffffff;fill-opacity:0.55}\
         .grid{stroke:#e0e0e0;stroke-width:1}.axis{fill:#555}\
         .region{font-weight:bold;font-size:12px}.label{fill:#222}.label.critical{fill:#d62728;font-weight:bold}\
         .note{fill:#555}\
         </style>\n",
    );
    let _ = writeln!(s, r##"<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="12" y="22" font-size="15" font-weight="bold">tap {} · {} · started {}</text>"#,
        esc(&t.command),
        duration(total),
        esc(&t.started_at)
    );
    let _ = writeln!(
        s,
        r#"<text x="12" y="40" class="note">critical path ({}): {}</text>"#,
        critical.len(),
        esc(&critical.join(" → "))
    );
    // Legend.
    let ly = 50.0;
    let _ = writeln!(
        s,
        r#"<rect x="12" y="{ly}" width="18" height="10" class="bar"/><text x="34" y="{}">API work</text>"#,
        ly + 9.0
    );
    let _ = writeln!(
        s,
        r#"<rect x="100" y="{ly}" width="18" height="10" class="bar"/><rect x="100" y="{ly}" width="18" height="10" class="wait"/><text x="122" y="{}">waiting on AWS</text>"#,
        ly + 9.0
    );
    let _ = writeln!(
        s,
        r#"<rect x="220" y="{ly}" width="18" height="10" class="bar critical"/><text x="242" y="{}">critical path</text>"#,
        ly + 9.0
    );

    // Time axis: grid lines and labels.
    let bottom = height - 30.0;
    let st = step(total);
    let mut tick = 0.0;
    while tick <= total + 1e-9 {
        let tx = x(tick);
        let _ = writeln!(
            s,
            r#"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{bottom}" class="grid"/><text x="{tx:.1}" y="{}" text-anchor="middle" class="axis">{}</text>"#,
            bottom + 14.0,
            duration(tick)
        );
        tick += st;
    }

    let mut y = TOP;
    for (region, bars) in &groups {
        let _ = writeln!(
            s,
            r#"<text x="12" y="{}" class="region">{}</text>"#,
            y + 17.0,
            esc(region)
        );
        y += HEADER;
        for b in bars {
            let mut class = String::from("bar");
            if b.critical {
                class.push_str(" critical");
            }
            if b.action == "failed" {
                class.push_str(" failed");
            }
            let (x0, x1) = (x(b.start_s), x(b.end_s).max(x(b.start_s) + 1.5));
            let label_class = if b.critical { "label critical" } else { "label" };
            let _ = writeln!(
                s,
                r#"<text x="20" y="{:.1}" class="{label_class}">{}</text>"#,
                y + 12.0,
                esc(&b.node)
            );
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="12" class="{class}"><title>{}</title><desc>{} {} in {}</desc></rect>"#,
                y + 3.0,
                x1 - x0,
                esc(&b.node),
                esc(&b.kind),
                esc(&b.action),
                duration(b.end_s - b.start_s)
            );
            for (w0, w1) in &b.waits {
                let (a, z) = (x(*w0), x(*w1));
                if z > a {
                    let _ = writeln!(
                        s,
                        r#"<rect x="{a:.1}" y="{:.1}" width="{:.1}" height="12" class="wait"><title>{} waiting {}</title></rect>"#,
                        y + 3.0,
                        z - a,
                        esc(&b.node),
                        duration(w1 - w0)
                    );
                }
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" class="note">{} {}</text>"#,
                x1 + 4.0,
                y + 12.0,
                esc(&b.action),
                length(b.end_s - b.start_s)
            );
            y += ROW;
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(4.4), "4s");
        assert_eq!(duration(180.0), "3m");
        assert_eq!(duration(750.0), "12m30s");
        assert_eq!(duration(3900.0), "1h05m");
    }
}
