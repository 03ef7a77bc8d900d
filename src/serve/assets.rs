//! The page, embedded in the binary: plain HTML, CSS and JavaScript files (src/serve/page/),
//! no build step, nothing loaded from another host. Only these files are served, by their
//! fixed names: no part of a request's path reaches the file system.
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::{IntoResponse, Response};

/// One embedded file: its URL path, its media type and its text.
pub struct Asset {
    pub path: &'static str,
    pub media_type: &'static str,
    pub text: &'static str,
}

/// Every file of the page.
pub const ASSETS: [Asset; 5] = [
    Asset { path: "/", media_type: "text/html; charset=utf-8", text: include_str!("page/index.html") },
    Asset { path: "/style.css", media_type: "text/css; charset=utf-8", text: include_str!("page/style.css") },
    Asset { path: "/app.js", media_type: "text/javascript; charset=utf-8", text: include_str!("page/app.js") },
    Asset { path: "/draw.js", media_type: "text/javascript; charset=utf-8", text: include_str!("page/draw.js") },
    Asset { path: "/view.js", media_type: "text/javascript; charset=utf-8", text: include_str!("page/view.js") },
];

/// The page may load and connect to this server only (and read and draw the images it made
/// itself: the PNG it sent, behind its "The image sent" link, is a blob: URL).
pub const POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; connect-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

impl Asset {
    /// The file as a response.
    pub fn response(&self) -> Response {
        ([(CONTENT_TYPE, self.media_type), (CONTENT_SECURITY_POLICY, POLICY), (X_CONTENT_TYPE_OPTIONS, "nosniff"), (CACHE_CONTROL, "no-cache")], self.text).into_response()
    }
}
