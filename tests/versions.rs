//! One version number: Cargo.toml's. The CMake and pkg-config files read it at configure time
//! (cmake/CMakeLists.txt) and the C ABI's `gradtau_version()` is compiled from it; this test
//! fails when a copy that cannot be derived (the header's macros, the CLI's requirement on the
//! library, the Maven artifacts, the documented Go tag, Maven coordinates, CMake version request
//! and library file names) disagrees.

use std::path::Path;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Every `<marker><version>` in `text`, the version running up to the first character that
/// cannot be part of one.
fn versions_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    text.match_indices(marker)
        .map(|(i, _)| {
            let rest = &text[i + marker.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches('.')
        })
        .collect()
}

fn major_minor() -> String {
    let mut parts = VERSION.split('.');
    format!("{}.{}", parts.next().unwrap(), parts.next().unwrap())
}

#[test]
fn the_header_macros_follow_cargo_toml() {
    let header = read("include/gradtau.h");
    let parts: Vec<&str> = VERSION.split('.').collect();
    for (name, want) in ["MAJOR", "MINOR", "PATCH"].iter().zip(&parts) {
        let line = format!("#define GRADTAU_VERSION_{name} {want}\n");
        assert!(
            header.contains(&line),
            "include/gradtau.h lacks `{}`",
            line.trim()
        );
    }
}

#[test]
fn the_cli_requires_this_library_version() {
    let manifest = read("crates/gradtau-cli/Cargo.toml");
    let req = versions_after(&manifest, "gradtau = { path = \"../..\", version = \"");
    assert_eq!(
        req,
        [VERSION],
        "crates/gradtau-cli/Cargo.toml's gradtau requirement"
    );
}

#[test]
fn the_maven_artifacts_follow_cargo_toml() {
    let pom = read("bindings/java/pom.xml");
    let project = versions_after(&pom, "<artifactId>gradtau</artifactId>\n  <version>");
    assert_eq!(project, [VERSION], "bindings/java/pom.xml's <version>");
    let consumer = read("tests/consumers/java/pom.xml");
    let dependency = versions_after(
        &consumer,
        "<artifactId>gradtau</artifactId>\n      <version>",
    );
    assert_eq!(
        dependency,
        [VERSION],
        "tests/consumers/java/pom.xml's dependency"
    );
}

#[test]
fn the_documented_versions_follow_cargo_toml() {
    for doc in [
        "README.md",
        "bindings/go/README.md",
        "bindings/java/README.md",
        "docs/C_AND_CPP.md",
        "tests/cmake-consumer/CMakeLists.txt",
    ] {
        let text = read(doc);
        for (marker, want) in [
            ("gradtau/bindings/go@v", VERSION.to_string()),
            ("bindings/go/v", VERSION.to_string()),
            ("dev.gradtau:gradtau:", VERSION.to_string()),
            (
                "<artifactId>gradtau</artifactId>\n  <version>",
                VERSION.to_string(),
            ),
            ("find_package(gradtau ", major_minor()),
        ] {
            for found in versions_after(&text, marker) {
                // `bindings/go/vX.Y.Z` written as the pattern itself has no digits.
                if found.is_empty() {
                    continue;
                }
                assert_eq!(found, want, "{doc}: `{marker}{found}`");
            }
        }
    }
}

#[test]
fn the_documented_library_file_names_follow_cargo_toml_and_the_abi() {
    let header = read("include/gradtau.h");
    let abi = versions_after(&header, "#define GRADTAU_ABI_VERSION ");
    assert_eq!(abi.len(), 1, "GRADTAU_ABI_VERSION in include/gradtau.h");
    for doc in [
        "README.md",
        "docs/C_AND_CPP.md",
        "bindings/go/README.md",
        "bindings/java/README.md",
    ] {
        let text = read(doc);
        for found in versions_after(&text, "libgradtau.so.") {
            match found.matches('.').count() {
                0 if found.is_empty() => {}
                0 => assert_eq!(found, abi[0], "{doc}: SONAME `libgradtau.so.{found}`"),
                _ => assert_eq!(found, VERSION, "{doc}: `libgradtau.so.{found}`"),
            }
        }
    }
}

#[test]
fn the_readme_pins_the_current_version_somewhere() {
    let readme = read("README.md");
    let pinned = format!("gradtau/bindings/go@v{VERSION}");
    assert!(readme.contains(&pinned), "README.md lacks `{pinned}`");
    let pinned = format!("dev.gradtau:gradtau:{VERSION}");
    assert!(readme.contains(&pinned), "README.md lacks `{pinned}`");
}
