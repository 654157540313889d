//! The committed `ui/dist` must be what `npm run build` makes of the committed sources:
//! the binary embeds `ui/dist`, so a source change without a rebuild would ship an old UI
//! without anyone noticing.
//!
//! `npm run build` records a fingerprint of its inputs in `ui/dist/.source-hash`
//! (`ui/scripts/source-hash.mjs` describes the recipe); this test recomputes it from the
//! files in `ui/` and compares.

use std::path::{Path, PathBuf};

const DIRS: [&str; 2] = ["src", "public"];
const INPUTS: [&str; 5] = [
    "index.html",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "vite.config.ts",
];
const REBUILD: &str = "run `npm --prefix ui ci && npm --prefix ui run build` and commit ui/dist";

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui")
}

fn walk(ui: &Path, relative: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(ui.join(relative)) else {
        return;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let child = format!("{relative}/{}", entry.file_name().to_string_lossy());
        // Like Node's Dirent: a symlink is neither a file nor a directory.
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            walk(ui, &child, out);
        } else if kind.is_file() {
            out.push(child);
        }
    }
}

fn source_hash(ui: &Path) -> String {
    let mut files = Vec::new();
    for dir in DIRS {
        walk(ui, dir, &mut files);
    }
    files.extend(
        INPUTS
            .iter()
            .filter(|f| ui.join(f).is_file())
            .map(|f| f.to_string()),
    );
    files.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for file in &files {
        feed(file.as_bytes());
        feed(&[0]);
        feed(&std::fs::read(ui.join(file)).unwrap());
        feed(&[0]);
    }
    format!("{h:016x}")
}

#[test]
fn committed_dist_matches_the_sources() {
    let ui = ui_dir();
    let recorded = std::fs::read_to_string(ui.join("dist/.source-hash")).unwrap_or_else(|_| {
        panic!("ui/dist/.source-hash is missing, so ui/dist was never built: {REBUILD}")
    });
    let current = source_hash(&ui);
    assert_eq!(
        recorded.trim(),
        current,
        "ui/dist is stale: it was built from sources with fingerprint {}, but ui/ now has {current}; {REBUILD}",
        recorded.trim()
    );
}

#[test]
fn the_binary_embeds_the_committed_dist() {
    let dist = ui_dir().join("dist");
    for asset in clew_ui::assets() {
        let on_disk = std::fs::read(dist.join(asset.path.trim_start_matches('/')))
            .unwrap_or_else(|_| panic!("{} is embedded but not in ui/dist", asset.path));
        assert!(
            on_disk == asset.body,
            "{} differs from ui/dist; rebuild clew",
            asset.path
        );
    }
    assert!(
        clew_ui::assets().iter().any(|a| a.path == "/index.html"),
        "no index.html embedded: {REBUILD}"
    );
}
