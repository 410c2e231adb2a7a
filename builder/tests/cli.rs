//! The `fabricks` binary end to end, with the real Go toolchain and engine.

use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fabricks() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fabricks"));
    command
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("RUST_LOG");
    command
}

fn go_hello() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/go-hello")
        .canonicalize()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeed(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        text(&output.stderr)
    );
    output
}

/// Every file of an image-layout tar by path.
fn archive_files(path: &Path) -> HashMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut files = HashMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(entry.path().unwrap().to_string_lossy().into_owned(), data);
    }
    files
}

fn blob<'a>(files: &'a HashMap<String, Vec<u8>>, digest: &Value) -> &'a [u8] {
    let hex = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
    &files[&format!("blobs/sha256/{hex}")]
}

#[test]
fn builds_go_hello_into_a_wasi_image() {
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("go-hello.tar");
    let output = succeed(
        fabricks()
            .arg("build")
            .arg(go_hello())
            .arg("-o")
            .arg(&archive),
    );
    let stdout = text(&output.stdout);
    assert!(stdout.contains("localhost/go-hello:latest"), "{stdout}");

    let files = archive_files(&archive);
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let descriptor = &index["manifests"][0];
    assert_eq!(descriptor["platform"]["os"], "wasi");
    assert_eq!(descriptor["platform"]["architecture"], "wasm");
    assert_eq!(
        descriptor["annotations"]["io.containerd.image.name"],
        "localhost/go-hello:latest"
    );
    assert!(
        stdout.contains(descriptor["digest"].as_str().unwrap()),
        "digest not printed: {stdout}"
    );

    let manifest: Value = serde_json::from_slice(blob(&files, &descriptor["digest"])).unwrap();
    let config: Value =
        serde_json::from_slice(blob(&files, &manifest["config"]["digest"])).unwrap();
    assert_eq!(config["os"], "wasi");
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/go-hello.wasm"])
    );

    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let mut layer_tar = Vec::new();
    flate2::read::GzDecoder::new(blob(&files, &layer["digest"]))
        .read_to_end(&mut layer_tar)
        .unwrap();
    let mut entries = tar::Archive::new(layer_tar.as_slice());
    let mut entry = entries.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some("go-hello.wasm"));
    let mut module = Vec::new();
    entry.read_to_end(&mut module).unwrap();
    assert!(
        module.starts_with(b"\0asm"),
        "layer does not hold a wasm module"
    );

    // Go with -trimpath and fixed timestamps: a rebuild is byte-identical.
    let again = out.path().join("again.tar");
    succeed(
        fabricks()
            .arg("build")
            .arg(go_hello())
            .arg("-o")
            .arg(&again),
    );
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        std::fs::read(&again).unwrap()
    );

    runs_the_built_module(&go_hello().join(".fabricks/go-hello.wasm"));
}

/// Runs the module `fabricks build` left in the build directory, so the
/// engine test reuses that build instead of racing it for the same file.
fn runs_the_built_module(module: &Path) {
    let cache = tempfile::tempdir().unwrap();
    let output = fabricks()
        .env("XDG_CACHE_HOME", cache.path())
        .args(["run", "--env", "GREETING=hi there"])
        .arg(module)
        .args(["--", "--exit", "3", "a", "b"])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(3),
        "stderr:\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("Hello from Fabricks!"), "{stdout}");
    assert!(stdout.contains("runtime: wasip1/wasm"), "{stdout}");
    assert!(stdout.contains(r#"args: ["a" "b"]"#), "{stdout}");
    assert!(stdout.contains("GREETING: hi there"), "{stdout}");
}

#[test]
fn a_dotnet_project_is_recognised_but_not_built_yet() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Hello.csproj"),
        "<Project Sdk=\"Microsoft.NET.Sdk\" />\n",
    )
    .unwrap();
    let output = fabricks().arg("build").arg(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(".NET support lands in a later release"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn an_empty_directory_says_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let output = fabricks().arg("build").arg(dir.path()).output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("go.mod") && stderr.contains("*.csproj"),
        "{stderr}"
    );
}

#[test]
fn a_missing_go_tool_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("go.mod"), "module x\n\ngo 1.24\n").unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let output = fabricks()
        .env("PATH", empty_path.path())
        .arg("build")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("`go` tool is not on PATH"), "{stderr}");
}

#[test]
fn run_fails_with_125_on_what_is_not_a_module() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not.wasm");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let output = fabricks()
        .env("XDG_CACHE_HOME", dir.path())
        .arg("run")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(
        text(&output.stderr).contains("not a WebAssembly module"),
        "{}",
        text(&output.stderr)
    );
}
