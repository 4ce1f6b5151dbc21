//! `/static/…` and `/favicon.ico`: the owner's files from `STATIC_DIR` (a logo, a favicon,
//! images for pages), with their content types and caching; the stylesheet and a favicon are
//! built in, for when the folder has no file of that name (an installed binary has no
//! `static/` beside it).

use std::path::{Path, PathBuf};

use actix_files::NamedFile;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::config::Config;
use crate::web::error::AppError;

/// How long browsers may keep a static file before asking again (they then get a 304 when it
/// has not changed).
const CACHE: &str = "public, max-age=3600";

/// Files compiled into the binary: name, content type, bytes.
const BUILT_IN: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../static/style.css"),
    ),
    (
        "favicon.ico",
        "image/x-icon",
        include_bytes!("../../../static/favicon.ico"),
    ),
];

/// `GET /static/{path}`.
pub async fn file(
    req: HttpRequest,
    path: web::Path<String>,
    config: web::Data<Config>,
) -> Result<HttpResponse, AppError> {
    serve(&req, &config.static_dir, &path).await
}

/// `GET /favicon.ico`: `STATIC_DIR/favicon.ico`, or the built-in one.
pub async fn favicon(
    req: HttpRequest,
    config: web::Data<Config>,
) -> Result<HttpResponse, AppError> {
    serve(&req, &config.static_dir, "favicon.ico").await
}

async fn serve(req: &HttpRequest, dir: &Path, name: &str) -> Result<HttpResponse, AppError> {
    if let Some(path) = resolve(dir, name) {
        match NamedFile::open_async(&path).await {
            Ok(file) => {
                let mut response = file
                    .use_etag(true)
                    .use_last_modified(true)
                    .into_response(req);
                response.headers_mut().insert(
                    header::CACHE_CONTROL,
                    header::HeaderValue::from_static(CACHE),
                );
                return Ok(response);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "a static file could not be read")
            }
        }
    }
    match BUILT_IN.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => Ok(HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header((header::CACHE_CONTROL, CACHE))
            .body(*bytes)),
        None => Err(AppError::NotFound),
    }
}

/// The file `name` names inside `dir`, if it is a plain relative path to a regular file that
/// really lies inside it (no `..`, no hidden files, no link leading out).
fn resolve(dir: &Path, name: &str) -> Option<PathBuf> {
    let plain = name.split('/').all(|part| {
        !part.is_empty()
            && !part.starts_with('.')
            && !part.chars().any(|c| c == '\\' || c.is_control())
    });
    if !plain || name.len() > 512 {
        return None;
    }
    let root = dir.canonicalize().ok()?;
    let path = root.join(name).canonicalize().ok()?;
    (path.starts_with(&root) && path.is_file()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_inside_the_folder_resolve() {
        let dir = std::env::temp_dir().join(format!("clubhouse-static-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("img")).unwrap();
        std::fs::write(dir.join("img/logo.png"), b"png").unwrap();
        std::fs::write(dir.join(".secret"), b"x").unwrap();
        assert!(resolve(&dir, "img/logo.png").is_some());
        for bad in [
            "../x",
            "img/../img/logo.png",
            ".secret",
            "img//logo.png",
            "/etc/passwd",
            "img",
            "img\\logo.png",
        ] {
            assert!(resolve(&dir, bad).is_none(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
