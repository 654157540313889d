//! Embeds `ui/dist` (the built web UI, committed to git) as a static table of files, so
//! `cargo build` needs no Node.js and the binary needs no files beside it.
//!
//! Written out instead of using an embedding crate: the whole job is a directory walk and
//! an `include_bytes!` per file, and the table can carry what serving needs (content
//! type, cache policy, ETag) precomputed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dist = manifest.join("../../ui/dist");
    // A directory here makes cargo rerun this script when anything below it changes.
    println!("cargo:rerun-if-changed={}", dist.display());
    println!("cargo:rerun-if-changed=build.rs");

    let mut files = Vec::new();
    if dist.is_dir() {
        walk(&dist, &dist, &mut files);
    } else {
        println!(
            "cargo:warning=ui/dist is missing, so the binary will serve no UI: run `npm --prefix ui ci && npm --prefix ui run build`"
        );
    }
    files.sort();

    let mut table = String::from("pub(crate) static ASSETS: &[Asset] = &[\n");
    for (route, path) in &files {
        let body = std::fs::read(path).expect("reading a ui/dist file");
        let absolute = path.canonicalize().expect("canonical path");
        writeln!(
            table,
            "    Asset {{ path: {route:?}, content_type: {:?}, immutable: {}, etag: \"\\\"{:016x}\\\"\", body: include_bytes!({:?}) }},",
            content_type(route),
            // Vite names what it puts under assets/ by content hash: a changed file gets
            // a new name, so the old one may be cached forever.
            route.starts_with("/assets/"),
            fnv1a64(&body),
            absolute.display().to_string(),
        )
        .unwrap();
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("assets.rs");
    std::fs::write(out, table).expect("writing the asset table");
}

/// Every file below `dir` as (`/url/path`, file), leaving out dotfiles such as
/// `.source-hash`, which describe the build rather than belong to the UI.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).expect("reading ui/dist");
    for entry in entries {
        let entry = entry.expect("ui/dist entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            walk(root, &path, out);
        } else if kind.is_file() {
            let relative = path.strip_prefix(root).expect("below root");
            let route: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((format!("/{}", route.join("/")), path));
        }
    }
}

fn content_type(route: &str) -> &'static str {
    let extension = route.rsplit_once('.').map_or("", |(_, e)| e);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
