//! Builds the dashboard (ui/) and embeds it: the engine serves it at `/` (src/dashboard.rs).
//!
//! 1. `npm ci` in ui/ when ui/node_modules was not installed from the current
//!    ui/package-lock.json with this Node (a stamp, shared with scripts/test.sh);
//! 2. `vite build` into `$OUT_DIR/ui` (ui/vite.config.ts reads CARPOOL_UI_OUT_DIR);
//! 3. for each built file: a gzip copy (level 9, kept only when smaller) and a content
//!    hash for its ETag, in a table of `include_bytes!` written to `$OUT_DIR/dashboard.rs`.
//!
//! `CARPOOL_UI_DIST=/path/to/built/ui` embeds that folder instead and needs no Node (for
//! packagers, and for a shell that builds the UI once for several binaries).
//!
//! The UI's inputs are listed file by file, not as directories (cargo would scan those
//! whole): `npm run gen` (run by the UI's check and test scripts) rewrites the generated
//! src/lib/api/schema.d.ts, which only the type check reads, and must not rebuild the
//! engine. A new file changes the build only once an existing one imports it; a removed
//! one is a listed file gone, which cargo counts as a change.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use sha2::{Digest, Sha256};

/// The Node.js the UI's toolchain (Vite 8) needs.
const NODE_MIN: (u32, u32) = (20, 19);
const STAMP: &str = "node_modules/.carpool.stamp";
/// Files under ui/src that are generated, not inputs.
const GENERATED: &[&str] = &["src/lib/api/schema.d.ts"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Cargo prints a failed build script's stderr under its own error line.
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env("OUT_DIR")?);
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARPOOL_UI_DIST");

    let dist = match std::env::var_os("CARPOOL_UI_DIST").filter(|v| !v.is_empty()) {
        Some(dist) => {
            let dist = PathBuf::from(dist);
            if !dist.join("index.html").is_file() {
                return Err(format!(
                    "CARPOOL_UI_DIST={} has no index.html: point it at the output of `npm run build` in ui/",
                    dist.display()
                ));
            }
            println!("cargo:rerun-if-changed={}", dist.display());
            dist
        }
        None => {
            let ui = manifest.join("ui");
            watch_inputs(&ui)?;
            let dist = out.join("ui");
            build_ui(&ui, &dist)?;
            dist
        }
    };
    embed(&dist, &out.join("dashboard.rs"))
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run through cargo)"))
}

/// `cargo:rerun-if-changed` for every file the built UI depends on.
fn watch_inputs(ui: &Path) -> Result<(), String> {
    for file in [
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "svelte.config.js",
        "tsconfig.json",
        "openapi.json",
    ] {
        println!("cargo:rerun-if-changed={}", ui.join(file).display());
    }
    for dir in ["src", "public"] {
        let mut files = Vec::new();
        match walk(&ui.join(dir), &mut files) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read ui/{dir}: {e}")),
        }
        for file in files {
            let relative = file.strip_prefix(ui).unwrap_or(&file);
            if !GENERATED.iter().any(|g| relative == Path::new(g)) {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
    }
    Ok(())
}

fn build_ui(ui: &Path, dist: &Path) -> Result<(), String> {
    let node = node_version()?;
    if node < NODE_MIN {
        return Err(format!(
            "Node.js {}.{} is too old to build the dashboard (ui/): install Node.js >= {}.{} with npm (see README.md, Prerequisites)",
            node.0, node.1, NODE_MIN.0, NODE_MIN.1
        ));
    }
    let lock = std::fs::read(ui.join("package-lock.json"))
        .map_err(|e| format!("cannot read ui/package-lock.json: {e}"))?;
    let stamp = stamp_text(&lock)?;
    let stamp_path = ui.join(STAMP);
    if std::fs::read(&stamp_path).ok().as_deref() != Some(stamp.as_slice()) {
        npm(
            ui,
            &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
            None,
        )?;
        std::fs::write(&stamp_path, &stamp).map_err(|e| format!("cannot write ui/{STAMP}: {e}"))?;
    }
    // Vite's own binary, not `npm run build`: that regenerates schema.d.ts (for the type
    // check) inside ui/src first.
    npm(
        ui,
        &["exec", "--offline", "--", "vite", "build"],
        Some(dist),
    )?;
    if !dist.join("index.html").is_file() {
        return Err(format!(
            "vite build wrote no {}",
            dist.join("index.html").display()
        ));
    }
    Ok(())
}

/// The stamp of an install: Node's version and platform, and the lockfile installed.
/// scripts/test.sh writes and reads the same one.
fn stamp_text(lock: &[u8]) -> Result<Vec<u8>, String> {
    let version = capture("node", &["--version"])?;
    let mut stamp = format!(
        "node: {} {} {}\n",
        version.trim(),
        capture("uname", &["-s"])
            .unwrap_or_else(|_| std::env::consts::OS.into())
            .trim(),
        capture("uname", &["-m"])
            .unwrap_or_else(|_| std::env::consts::ARCH.into())
            .trim(),
    )
    .into_bytes();
    stamp.extend_from_slice(lock);
    Ok(stamp)
}

fn node_version() -> Result<(u32, u32), String> {
    let text = capture("node", &["--version"]).map_err(|_| missing_node())?;
    // "v20.19.2"
    let mut parts = text.trim().trim_start_matches('v').split('.');
    let major = parts.next().and_then(|p| p.parse().ok());
    let minor = parts.next().and_then(|p| p.parse().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(format!(
            "cannot read Node.js's version from `node --version`: {text:?}"
        )),
    }
}

fn missing_node() -> String {
    format!(
        "building carpool needs Node.js >= {}.{} with npm, for the dashboard (ui/): install it \
         (macOS: `brew install node`; Debian/Ubuntu: see README.md, Prerequisites), \
         or set CARPOOL_UI_DIST to an already built ui/ folder",
        NODE_MIN.0, NODE_MIN.1
    )
}

fn npm_program() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

fn capture(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{program} {} failed", args.join(" ")));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs npm in ui/; its output is shown only when it fails (cargo keeps a build script's
/// output to itself otherwise).
fn npm(ui: &Path, args: &[&str], out_dir: Option<&Path>) -> Result<(), String> {
    let mut command = Command::new(npm_program());
    command
        .args(args)
        .current_dir(ui)
        .stdin(Stdio::null())
        // Cargo's own variables that Node tools read otherwise (`debug` reads DEBUG).
        .env_remove("DEBUG")
        .env("NO_COLOR", "1");
    if let Some(dir) = out_dir {
        command.env("CARPOOL_UI_OUT_DIR", dir);
    }
    let output = command.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            missing_node()
        } else {
            format!("cannot run npm: {e}")
        }
    })?;
    let _ = std::io::stderr().write_all(&output.stdout);
    let _ = std::io::stderr().write_all(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "`npm {}` in ui/ failed ({}); its output is above",
            args.join(" "),
            output.status
        ));
    }
    Ok(())
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// Types whose gzip copy is worth serving.
fn compressible(path: &Path) -> bool {
    matches!(
        path.extension().and_then(OsStr::to_str),
        Some("html" | "js" | "mjs" | "css" | "svg" | "json" | "webmanifest" | "txt" | "map")
    )
}

/// Writes the table of embedded files (`dashboard::FILES`).
fn embed(dist: &Path, table: &Path) -> Result<(), String> {
    let gz_dir = table.with_file_name("ui-gzip");
    let _ = std::fs::remove_dir_all(&gz_dir);
    let mut files = Vec::new();
    walk(dist, &mut files).map_err(|e| format!("cannot read {}: {e}", dist.display()))?;
    let mut code = String::from("&[\n");
    for file in &files {
        let relative = file.strip_prefix(dist).expect("walked from dist");
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let body =
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let hash = hex(&Sha256::digest(&body)[..12]);
        let gzip = if compressible(file) {
            let packed = gzip(&body);
            if packed.len() < body.len() {
                let path = gz_dir.join(format!("{name}.gz"));
                std::fs::create_dir_all(path.parent().expect("a file has a parent"))
                    .and_then(|()| std::fs::write(&path, packed))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                format!("Some(include_bytes!({:?}))", path.display().to_string())
            } else {
                "None".into()
            }
        } else {
            "None".into()
        };
        writeln!(
            code,
            "    File {{ name: {name:?}, body: include_bytes!({:?}), gzip: {gzip}, hash: {hash:?} }},",
            file.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("]\n");
    std::fs::write(table, code).map_err(|e| format!("cannot write {}: {e}", table.display()))
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(body).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
