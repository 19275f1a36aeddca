//! Builds the WebAssembly carrier plugins, so `cargo build` alone produces a
//! runnable Pigeon.
//!
//! Every crate under `plugins/*/`, the host's test guest (`tests/guests/`)
//! and the copyable adapter `examples/carrier-template/` are compiled for
//! `wasm32-wasip2` in release by a nested cargo with its own target directory
//! (`target/wasm-plugins`: the outer cargo holds the lock on the main one).
//! Each component's path is passed on as `PIGEON_PLUGIN_<NAME>` (`simulator`
//! → `PIGEON_PLUGIN_SIMULATOR`), `PIGEON_TEST_GUEST` and
//! `PIGEON_CARRIER_TEMPLATE`. Cargo's own freshness checks make the nested
//! builds cheap when nothing changed, and this script reruns only when
//! plugins/, sdk/, the test guest or the template's sources change.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("runtime/ is inside the workspace")
        .to_owned();
    let target_dir = workspace.join("target").join("wasm-plugins");
    let template = workspace.join("examples/carrier-template");

    // Only what goes into the component: the template's own `target/` (from
    // `cargo test` in its folder) and its fixtures must not rerun this.
    for watched in [
        workspace.join("plugins"),
        workspace.join("sdk"),
        manifest_dir.join("tests/guests/src"),
        manifest_dir.join("tests/guests/Cargo.toml"),
        template.join("src"),
        template.join("Cargo.toml"),
        template.join("Cargo.lock"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }

    check_target_installed();

    // The host's own test guest must build: the plugin tests need it.
    let guest_manifest = manifest_dir.join("tests/guests/Cargo.toml");
    if let Err(output) = build(&guest_manifest, &target_dir) {
        panic!(
            "building the test guest {} for {TARGET} failed:\n{output}",
            guest_manifest.display()
        );
    }
    println!(
        "cargo:rustc-env=PIGEON_TEST_GUEST={}",
        wasm_path(&target_dir, "pigeon-test-guest").display()
    );

    // Bundled plugins. One that does not build is reported as a warning and
    // left out (its variable is not set), so work on one plugin does not
    // stop the runtime from building.
    for (name, manifest) in plugin_crates(&workspace.join("plugins")) {
        match build(&manifest, &target_dir) {
            Ok(()) => println!(
                "cargo:rustc-env=PIGEON_PLUGIN_{}={}",
                name.to_uppercase().replace('-', "_"),
                wasm_path(&target_dir, &name).display()
            ),
            Err(output) => {
                for line in output.lines().filter(|l| l.starts_with("error")).take(5) {
                    println!("cargo:warning=plugin `{name}`: {line}");
                }
                println!("cargo:warning=plugin `{name}` did not build for {TARGET}; left out");
            }
        }
    }

    // The carrier template, for the test that runs it end to end
    // (tests/carrier_template.rs). Like a bundled plugin, one that does not
    // build is a warning (that test then does not compile), not a failed
    // runtime build.
    let template_manifest = template.join("Cargo.toml");
    if template_manifest.exists() {
        match build(&template_manifest, &target_dir) {
            Ok(()) => println!(
                "cargo:rustc-env=PIGEON_CARRIER_TEMPLATE={}",
                wasm_path(&target_dir, "carrier-template").display()
            ),
            Err(output) => {
                for line in output.lines().filter(|l| l.starts_with("error")).take(5) {
                    println!("cargo:warning=carrier template: {line}");
                }
                println!(
                    "cargo:warning=examples/carrier-template did not build for {TARGET}; \
                     PIGEON_CARRIER_TEMPLATE is not set"
                );
            }
        }
    }
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key}"))
}

/// The plugins need the wasm32-wasip2 standard library. On a machine that
/// lacks it, add it with rustup (rust-toolchain.toml names it too, but rustup
/// only installs that with a new toolchain), so that `cargo run` works on a
/// fresh clone without an extra step.
fn check_target_installed() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let Some(sysroot) = sysroot else { return };
    if sysroot.join("lib/rustlib").join(TARGET).exists() {
        return;
    }
    println!(
        "cargo:warning=installing the {TARGET} target for the carrier plugins (rustup target add {TARGET})"
    );
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|status| status.success());
    if !added || !sysroot.join("lib/rustlib").join(TARGET).exists() {
        panic!(
            "the {TARGET} target is not installed, and the carrier plugins need it: \
             run `rustup target add {TARGET}`"
        );
    }
}

/// `(package name, manifest)` for each crate directly under `plugins/`.
fn plugin_crates(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut crates: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("Cargo.toml"))
        .filter_map(|manifest| {
            let text = std::fs::read_to_string(&manifest).ok()?;
            Some((package_name(&text)?, manifest))
        })
        .collect();
    crates.sort();
    crates
}

/// The `name` in a manifest's `[package]` table (a line scan: enough for
/// the manifests in this repository, and no TOML parser in the build).
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(value) = line.strip_prefix("name") {
            let value = value.trim_start().strip_prefix('=')?.trim();
            return Some(value.trim_matches('"').to_owned());
        }
    }
    None
}

fn wasm_path(target_dir: &Path, package: &str) -> PathBuf {
    target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// Runs the nested cargo; on failure returns its output.
fn build(manifest: &Path, target_dir: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir)
        // Plugins ship without debug info, whatever the workspace's release
        // profile says.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    // What the outer build set for itself must not leak into the nested one
    // (flags for the host target, clippy as the compiler wrapper).
    for key in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(key);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
