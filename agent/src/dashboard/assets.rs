//! The page's files, compiled into the binary: nothing is fetched from anywhere else.
//! uPlot (MIT, by Leon Sorokin) is vendored from the npm registry, with its licence beside it.

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/dashboard/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/dashboard/app.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/dashboard/style.css"),
    },
    Asset {
        path: "/uplot.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "/uplot.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/uplot/uPlot.min.css"),
    },
    Asset {
        path: "/licenses/uplot.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../assets/uplot/LICENSE"),
    },
];

pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}
