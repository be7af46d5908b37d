//! Tauri's build step: reads the app's config (at the repository root, beside `icons/`)
//! and the capabilities in `capabilities/`, and generates the context the app embeds.

fn main() {
    let attributes = tauri_build::Attributes::new();
    if let Err(e) = tauri_build::try_build(attributes.config_path("../tauri.conf.json")) {
        panic!("tauri build step: {e:#}");
    }
}
