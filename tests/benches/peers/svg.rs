//! A grouped bar chart written by hand (no crate): one panel per N, each scaled to its own
//! largest bar (N=10 and N=500 differ by orders of magnitude), one bar per contender with its
//! value on top, a shared legend.

const COLOURS: [&str; 8] = [
    "#9e9e9e", "#616161", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#8c564b",
];

pub struct Panel {
    pub label: String,
    /// (contender, value); NaN = not measured (no bar, "n/a").
    pub bars: Vec<(String, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn grouped_bars(title: &str, unit: &str, panels: &[Panel]) -> String {
    let bar_w = 34.0;
    let gap = 8.0;
    let bars = panels.iter().map(|p| p.bars.len()).max().unwrap_or(0) as f64;
    let panel_w = bars * (bar_w + gap) + 30.0;
    let (top, plot_h) = (50.0, 220.0);
    let width = (40.0 + panels.len() as f64 * panel_w).max(640.0);
    let height = top + plot_h + 90.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"20\" y=\"24\" font-size=\"15\" font-weight=\"bold\">{} ({})</text>\n",
        esc(title),
        esc(unit)
    );
    for (i, p) in panels.iter().enumerate() {
        let x0 = 30.0 + i as f64 * panel_w;
        let max = p
            .bars
            .iter()
            .map(|b| b.1)
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let base = top + plot_h;
        s.push_str(&format!(
            "<line x1=\"{x0:.1}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"#333\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\n",
            x0 + panel_w - 20.0,
            x0 + (panel_w - 20.0) / 2.0,
            base + 18.0,
            esc(&p.label)
        ));
        for (j, (_, v)) in p.bars.iter().enumerate() {
            let x = x0 + 5.0 + j as f64 * (bar_w + gap);
            let colour = COLOURS[j % COLOURS.len()];
            if !v.is_finite() {
                s.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#777\">n/a</text>\n",
                    x + bar_w / 2.0,
                    base - 4.0
                ));
                continue;
            }
            let h = if max > 0.0 { v / max * plot_h } else { 0.0 };
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"{colour}\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                base - h,
                x + bar_w / 2.0,
                base - h - 4.0,
                fmt(*v)
            ));
        }
    }
    let names: Vec<&String> = panels
        .first()
        .map(|p| p.bars.iter().map(|b| &b.0).collect())
        .unwrap_or_default();
    let ly = top + plot_h + 45.0;
    for (j, name) in names.iter().enumerate() {
        let x = 30.0 + (j % 4) as f64 * 150.0;
        let y = ly + (j / 4) as f64 * 18.0;
        s.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            y - 10.0,
            COLOURS[j % COLOURS.len()],
            x + 16.0,
            y,
            esc(name)
        ));
    }
    s.push_str("</svg>\n");
    s
}
