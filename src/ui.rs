//! The web UI at `/ui`, its assets embedded in the binary. (Stub: owned by the UI work.)

use std::path::PathBuf;

use warp::filters::BoxedFilter;
use warp::Filter;

/// Routes `/ui`, `/ui/...`, `/assets/...`, `/favicon.ico`. `webui_dir` overrides the
/// embedded assets with files on disk.
pub fn filter(_webui_dir: Option<PathBuf>) -> BoxedFilter<(Box<dyn warp::Reply>,)> {
    warp::path("ui")
        .map(|| Box::new(warp::http::StatusCode::NOT_FOUND) as Box<dyn warp::Reply>)
        .boxed()
}
