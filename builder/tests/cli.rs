//! The `fabricks` binary end to end, with the real Go toolchain and engine.

use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fabricks() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fabricks"));
    command.env_remove("SOURCE_DATE_EPOCH").env_remove("RUST_LOG");
    command
}

fn go_hello() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/go-hello").canonicalize().unwrap()
}

fn go_http() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/go-http").canonicalize().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeed(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?} failed:\n{}", text(&output.stderr));
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
    let output = succeed(fabricks().arg("build").arg(go_hello()).arg("-o").arg(&archive));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("localhost/go-hello:latest"), "{stdout}");

    let files = archive_files(&archive);
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let descriptor = &index["manifests"][0];
    assert_eq!(descriptor["platform"]["os"], "wasi");
    assert_eq!(descriptor["platform"]["architecture"], "wasm");
    assert_eq!(descriptor["annotations"]["io.containerd.image.name"], "localhost/go-hello:latest");
    assert!(stdout.contains(descriptor["digest"].as_str().unwrap()), "digest not printed: {stdout}");

    let manifest: Value = serde_json::from_slice(blob(&files, &descriptor["digest"])).unwrap();
    let config: Value = serde_json::from_slice(blob(&files, &manifest["config"]["digest"])).unwrap();
    assert_eq!(config["os"], "wasi");
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/go-hello.wasm"]));

    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let mut layer_tar = Vec::new();
    flate2::read::GzDecoder::new(blob(&files, &layer["digest"])).read_to_end(&mut layer_tar).unwrap();
    let mut entries = tar::Archive::new(layer_tar.as_slice());
    let mut entry = entries.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some("go-hello.wasm"));
    let mut module = Vec::new();
    entry.read_to_end(&mut module).unwrap();
    assert!(module.starts_with(b"\0asm"), "layer does not hold a wasm module");

    // Go with -trimpath and fixed timestamps: a rebuild is byte-identical.
    let again = out.path().join("again.tar");
    succeed(fabricks().arg("build").arg(go_hello()).arg("-o").arg(&again));
    assert_eq!(std::fs::read(&archive).unwrap(), std::fs::read(&again).unwrap());

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
    assert_eq!(output.status.code(), Some(3), "stderr:\n{}", text(&output.stderr));
    assert!(stdout.contains("Hello from Fabricks!"), "{stdout}");
    assert!(stdout.contains("runtime: wasip1/wasm"), "{stdout}");
    assert!(stdout.contains(r#"args: ["a" "b"]"#), "{stdout}");
    assert!(stdout.contains("GREETING: hi there"), "{stdout}");
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").canonicalize().unwrap()
}

/// A copy of an example, so that builds write into a private .fabricks/.
fn copy_example(name: &str, into: &Path) -> PathBuf {
    let to = into.join(name);
    let status = Command::new("cp").arg("-r").arg(examples().join(name)).arg(&to).status().unwrap();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(to.join(".fabricks"));
    to
}

#[test]
fn dotnet_hello_without_dotnet_names_the_sdk_its_install_and_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let hello = copy_example("dotnet-hello", dir.path());
    let empty_path = tempfile::tempdir().unwrap();
    let output = fabricks().env("PATH", empty_path.path()).arg("build").arg(&hello).output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for expected in [
        "`dotnet` is not on PATH",
        "net8.0 with the wasi-experimental workload: a WASI preview-1 module with its AppBundle",
        "the .NET 8 SDK",
        "dotnet-install.sh",
        "dotnet workload install wasi-experimental",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing from: {stderr}");
    }
    assert!(!hello.join(".fabricks").exists(), "nothing was built");
}

#[test]
fn a_net9_project_is_told_that_dotnet_9_has_no_wasi_support() {
    let dir = tempfile::tempdir().unwrap();
    let hello = copy_example("dotnet-hello", dir.path());
    let csproj = hello.join("DotnetHello.csproj");
    let text9 = std::fs::read_to_string(&csproj).unwrap().replace(">net8.0<", ">net9.0<");
    std::fs::write(&csproj, text9).unwrap();
    let output = fabricks().arg("build").arg(&hello).output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("net9.0: .NET 9 has no WASI support"), "{stderr}");
}

#[test]
fn dotnet_refuses_reactor_mode_and_native_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let hello = copy_example("dotnet-hello", dir.path());
    for (flag, expected) in [("--native", "no native .NET build"), ("--mode=reactor", "drop --mode reactor")] {
        let output = fabricks().arg("build").arg(&hello).arg(flag).output().unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{flag}: {stderr}");
        assert!(stderr.contains(expected), "{flag}: {stderr}");
    }
}

#[test]
fn two_csproj_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("One.csproj"), "<Project />").unwrap();
    std::fs::write(dir.path().join("Two.csproj"), "<Project />").unwrap();
    let output = fabricks().arg("build").arg(dir.path()).output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("holds 2 project files (One.csproj, Two.csproj)"), "{stderr}");
}

/// A directory laid out like a published .NET AppBundle whose `dotnet.wasm` is the bundle
/// probe (test-cluster/bundle-probe, a Go wasip1 program that opens the files the .NET
/// runtime opens).
fn probe_bundle(dir: &Path) -> PathBuf {
    let bundle = dir.join("AppBundle");
    std::fs::create_dir_all(bundle.join("managed")).unwrap();
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-cluster/bundle-probe");
    let status = Command::new("go")
        .args(["build", "-trimpath", "-o"])
        .arg(bundle.join("dotnet.wasm"))
        .arg(".")
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .current_dir(probe)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(bundle.join("managed/Probe.dll"), "MZ").unwrap();
    std::fs::write(bundle.join("managed/System.Runtime.dll"), "MZ").unwrap();
    std::fs::write(bundle.join("Probe.runtimeconfig.json"), "{}").unwrap();
    std::fs::write(bundle.join("runtimeconfig.bin"), "\x01").unwrap();
    std::fs::write(bundle.join("icudt.dat"), "icu").unwrap();
    bundle
}

/// Every file of the image's layer by path.
fn layer_files(archive: &Path) -> HashMap<String, Vec<u8>> {
    let files = archive_files(archive);
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let manifest: Value = serde_json::from_slice(blob(&files, &index["manifests"][0]["digest"])).unwrap();
    let mut layer_tar = Vec::new();
    flate2::read::GzDecoder::new(blob(&files, &manifest["layers"][0]["digest"])).read_to_end(&mut layer_tar).unwrap();
    let mut entries = tar::Archive::new(layer_tar.as_slice());
    let mut layer = HashMap::new();
    for entry in entries.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        layer.insert(entry.path().unwrap().to_string_lossy().into_owned(), data);
    }
    layer
}

#[test]
fn an_app_bundle_is_packed_at_the_image_root_and_runs_seeing_its_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = probe_bundle(dir.path());
    let archive = dir.path().join("bundle.tar");
    let output = succeed(fabricks().arg("build").arg(&bundle).arg("-o").arg(&archive));
    assert!(text(&output.stdout).contains("localhost/probe:latest"), "named after the app: {}", text(&output.stdout));

    let config = image_config(&archive);
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/dotnet.wasm", "Probe"]));
    let layer = layer_files(&archive);
    for path in ["dotnet.wasm", "managed/", "managed/Probe.dll", "Probe.runtimeconfig.json", "runtimeconfig.bin"] {
        assert!(layer.contains_key(path), "{path} missing from the layer: {:?}", layer.keys());
    }
    assert!(layer["dotnet.wasm"].starts_with(b"\0asm"));
    assert!(!layer.keys().any(|k| k.starts_with(".fabricks")), "the build directory was packed: {:?}", layer.keys());

    let cache = tempfile::tempdir().unwrap();
    let output = fabricks()
        .env("XDG_CACHE_HOME", cache.path())
        .arg("run")
        .arg(&bundle)
        .args(["--", "a", "b c"])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", text(&output.stderr));
    assert!(stdout.contains("bundle-probe: app Probe, args [\"a\" \"b c\"]"), "{stdout}");
    assert!(stdout.contains("read /runtimeconfig.bin"), "{stdout}");
    assert!(stdout.contains("read /managed/Probe.dll"), "{stdout}");
    assert!(stdout.contains("the bundle is visible as the .NET runtime needs it"), "{stdout}");
}

/// A module with no main package at its root and two commands under ./cmd, the layout of
/// most Go CLIs, sharing an internal package.
fn commands_module(dir: &Path) -> PathBuf {
    let module = dir.join("tools");
    let files = [
        ("go.mod", "module example.com/tools\n\ngo 1.24\n"),
        ("internal/greet/greet.go", "package greet\n\nfunc Line(who string) string { return \"hello from \" + who }\n"),
        (
            "cmd/hello/main.go",
            "package main\n\nimport (\n\t\"fmt\"\n\t\"example.com/tools/internal/greet\"\n)\n\n\
             var version = \"dev\"\n\nfunc main() { fmt.Println(greet.Line(\"cmd/hello\"), version) }\n",
        ),
        ("cmd/bye/main.go", "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"bye\") }\n"),
    ];
    for (path, text) in files {
        let file = module.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    module
}

#[test]
fn commands_under_cmd_build_one_image_each_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let module = commands_module(dir.path());

    let output = succeed(fabricks().arg("build").arg(&module));
    let stdout = text(&output.stdout);
    for name in ["hello", "bye"] {
        assert!(stdout.contains(&format!("image:  localhost/{name}:latest")), "{stdout}");
        let config = image_config(&module.join(format!(".fabricks/{name}.tar")));
        assert_eq!(config["config"]["Entrypoint"], serde_json::json!([format!("/{name}.wasm")]));
    }

    // -o names one image: with two programs it needs a PACKAGE.
    let output = fabricks().arg("build").arg(&module).arg("-o").arg(dir.path().join("x.tar")).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("holds 2 programs (./cmd/bye, ./cmd/hello)"), "{}", text(&output.stderr));

    // One chosen by name, with -ldflags as `go build` takes it; from a package directory too.
    let archive = dir.path().join("hello.tar");
    succeed(
        fabricks()
            .arg("build")
            .arg(&module)
            .arg("hello")
            .arg("-o")
            .arg(&archive)
            .arg("--ldflags=-X main.version=1.2.3"),
    );
    assert!(contains(&layer_files(&archive)["hello.wasm"], b"1.2.3"), "-X did not reach the module");
    let output = succeed(fabricks().arg("build").arg(module.join("cmd/bye")).arg("-o").arg(dir.path().join("bye.tar")));
    assert!(text(&output.stdout).contains("localhost/bye:latest"), "{}", text(&output.stdout));

    // `package` and `ldflags` of fabricks.toml when no flag says otherwise.
    std::fs::write(module.join("fabricks.toml"), "package = \"./cmd/hello\"\nldflags = \"-X main.version=4.5.6\"\n")
        .unwrap();
    let output = succeed(fabricks().arg("build").arg(&module));
    assert!(text(&output.stdout).contains("localhost/hello:latest"), "{}", text(&output.stdout));
    assert!(contains(&layer_files(&module.join(".fabricks/hello.tar"))["hello.wasm"], b"4.5.6"));

    // The module of that image, as built into the build directory, runs.
    std::fs::remove_file(module.join("fabricks.toml")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let output = fabricks()
        .env("XDG_CACHE_HOME", cache.path())
        .arg("run")
        .arg(&module)
        .args(["--package", "./cmd/hello"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "hello from cmd/hello dev\n");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_empty_directory_says_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let output = fabricks().arg("build").arg(dir.path()).output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("go.mod") && stderr.contains("*.csproj"), "{stderr}");
}

#[test]
fn a_missing_go_tool_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("go.mod"), "module x\n\ngo 1.24\n").unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let output = fabricks().env("PATH", empty_path.path()).arg("build").arg(dir.path()).output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("`go` tool is not on PATH"), "{stderr}");
}

#[test]
fn run_fails_with_125_on_what_is_not_a_module() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not.wasm");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let output = fabricks().env("XDG_CACHE_HOME", dir.path()).arg("run").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(text(&output.stderr).contains("not a WebAssembly module"), "{}", text(&output.stderr));
}

/// The image config of an archive `fabricks build` wrote.
fn image_config(archive: &Path) -> Value {
    let files = archive_files(archive);
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let manifest: Value = serde_json::from_slice(blob(&files, &index["manifests"][0]["digest"])).unwrap();
    serde_json::from_slice(blob(&files, &manifest["config"]["digest"])).unwrap()
}

#[test]
fn listen_comes_from_fabricks_toml_or_the_flag() {
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("go-http.tar");
    let output = succeed(fabricks().arg("build").arg(go_http()).arg("-o").arg(&archive));
    assert!(text(&output.stdout).contains("listen: http=8080 (8080/tcp)"), "{}", text(&output.stdout));
    let config = image_config(&archive);
    assert_eq!(config["config"]["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(config["config"]["Labels"]["fabricks.io/listen"], "http=8080");

    // Flags replace the file's spec, all of them together.
    let flagged = out.path().join("flagged.tar");
    succeed(fabricks().arg("build").arg(go_http()).args(["-o"]).arg(&flagged).args([
        "--listen",
        "http=9000",
        "--listen",
        "admin=[::1]:9090/tcp",
    ]));
    let config = image_config(&flagged);
    assert_eq!(config["config"]["ExposedPorts"], serde_json::json!({"9000/tcp": {}, "9090/tcp": {}}));
    assert_eq!(config["config"]["Labels"]["fabricks.io/listen"], "http=9000,admin=[::1]:9090");
}

#[test]
fn a_bad_listen_spec_fails_before_building() {
    let dir = tempfile::tempdir().unwrap();
    // No Go source at all: the spec is checked before `go build` would fail.
    std::fs::write(dir.path().join("go.mod"), "module x\n\ngo 1.24\n").unwrap();
    for (args, file, expected) in [
        (vec!["--listen", "http=8080,http=9090"], None, "\"http=8080\" and \"http=9090\" both use the name \"http\""),
        (vec!["--listen", "http=70000"], None, "port 70000 is out of range"),
        (vec![], Some("listen = \"http=8080/udp\""), "only tcp"),
        (vec![], Some("listn = \"http=8080\""), "unknown field `listn`"),
        (vec!["--label", "fabricks.io/listen=http=1"], None, "give it as --listen"),
    ] {
        if let Some(file) = file {
            std::fs::write(dir.path().join("fabricks.toml"), file).unwrap();
        }
        let output = fabricks().arg("build").arg(dir.path()).args(&args).output().unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?} {file:?}: {stderr}");
        assert!(!stderr.contains("go build"), "{args:?}: built anyway: {stderr}");
        let _ = std::fs::remove_file(dir.path().join("fabricks.toml"));
    }
}

/// Kills the child if the test ends early.
struct Reap(Option<std::process::Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.0 GET: the head as text, and the body.
fn http_get(port: u16, path: &str) -> std::io::Result<(String, Vec<u8>)> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of the head"))?;
    Ok((text(&response[..split]), response[split + 4..].to_vec()))
}

#[test]
fn go_http_serves_on_the_socket_it_is_handed_and_stops_gracefully() {
    // Build the module into a private copy of the example's build (the
    // listen test above builds the same project).
    let out = tempfile::tempdir().unwrap();
    let module = out.path().join("go-http.wasm");
    let status = Command::new("go")
        .args(["build", "-trimpath", "-o"])
        .arg(&module)
        .arg(".")
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .current_dir(go_http())
        .status()
        .unwrap();
    assert!(status.success());

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = fabricks()
        .env("XDG_CACHE_HOME", out.path())
        .arg("run")
        .args(["--listen", &format!("http=127.0.0.1:{port}")])
        .arg(&module)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(Some(child));

    // Compiling the module takes a few seconds the first time in a release build; a debug
    // build's Cranelift on a loaded 2-core machine took over 6 minutes. A liveness bound, not a
    // timing: the loop also fails at once when `fabricks run` exits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    let response = loop {
        match http_get(port, "/json") {
            Ok(response) => break response,
            Err(_) if std::time::Instant::now() < deadline => {
                let running = child.0.as_mut().unwrap().try_wait().unwrap().is_none();
                assert!(running, "fabricks run exited early");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(err) => panic!("no answer on port {port}: {err}"),
        }
    };
    let (head, body) = response;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(text(&body).contains("\"runtime\": \"wasip1/wasm\""), "{}", text(&body));
    let (head, body) = http_get(port, "/stream?mb=2").unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert_eq!(body.len(), 2 << 20);
    assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));

    // SIGTERM: the listener is shut down, Serve returns, the program exits 0.
    let running = child.0.take().unwrap();
    unsafe { libc::kill(running.id() as i32, libc::SIGTERM) };
    let output = running.wait_with_output().unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{}", text(&output.stderr));
    assert!(stdout.contains("go-http: listening on"), "{stdout}");
    assert!(stdout.contains("GET \"/json\" HTTP/1.0 200"), "{stdout}");
    assert!(stdout.contains("GET \"/stream?mb=2\" HTTP/1.0 200 2097152B"), "{stdout}");
    assert!(stdout.ends_with("go-http: stopped\n"), "{stdout}");
}

#[test]
fn native_builds_a_static_linux_image_of_the_same_program() {
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("go-http-native.tar");
    let output = succeed(fabricks().arg("build").arg("--native").arg(go_http()).arg("-o").arg(&archive));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("localhost/go-http:native"), "{stdout}");

    let files = archive_files(&archive);
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let platform = &index["manifests"][0]["platform"];
    assert_eq!(platform["os"], "linux");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(platform["architecture"], arch);
    let config = image_config(&archive);
    assert_eq!((&config["os"], &config["architecture"]), (&platform["os"], &platform["architecture"]));
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/go-http"]));
    // The native program binds its own ports, from the same spec.
    assert_eq!(config["config"]["Env"], serde_json::json!(["FABRICKS_LISTEN=http=8080"]));

    let manifest: Value = serde_json::from_slice(blob(&files, &index["manifests"][0]["digest"])).unwrap();
    let mut layer_tar = Vec::new();
    flate2::read::GzDecoder::new(blob(&files, &manifest["layers"][0]["digest"])).read_to_end(&mut layer_tar).unwrap();
    let mut entries = tar::Archive::new(layer_tar.as_slice());
    let mut entry = entries.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some("go-http"));
    assert_eq!(entry.header().mode().unwrap(), 0o755);
    let mut binary = Vec::new();
    entry.read_to_end(&mut binary).unwrap();
    assert!(binary.starts_with(b"\x7fELF"), "layer does not hold an ELF executable");
}

#[test]
fn native_images_take_no_wasm_layer() {
    let out = tempfile::tempdir().unwrap();
    let output = fabricks()
        .args(["build", "--native", "--layer", "wasm"])
        .arg(go_hello())
        .arg("-o")
        .arg(out.path().join("x.tar"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("only go in a tar layer"), "{stderr}");
    assert!(!out.path().join("x.tar").exists());
}

#[test]
fn a_prebuilt_component_is_packed_beside_itself_with_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("greeter.wasm");
    // A component's preamble: magic, version 0x0d, layer 1.
    std::fs::write(&file, b"\0asm\x0d\0\x01\0").unwrap();
    let output = succeed(fabricks().arg("build").arg(&file).args(["--listen", "http=8080", "--label", "team=x"]));
    let stdout = text(&output.stdout);
    let archive = dir.path().join("greeter.tar");
    assert!(stdout.contains("localhost/greeter:latest"), "{stdout}");
    assert!(stdout.contains(&format!("file:   {}", archive.display())), "{stdout}");
    assert!(stdout.contains("listen: http=8080 (8080/tcp)"), "{stdout}");
    let config = image_config(&archive);
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/greeter.wasm"]));
    assert_eq!(config["config"]["Labels"]["fabricks.io/wasm-kind"], "component");
    assert_eq!(config["config"]["Labels"]["team"], "x");
    assert_eq!((&config["os"], &config["architecture"]), (&serde_json::json!("wasi"), &serde_json::json!("wasm")));
}

#[test]
fn build_refuses_a_file_that_is_not_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.wasm");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let output = fabricks().arg("build").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("not a WebAssembly module or component"), "{stderr}");
    assert!(!dir.path().join("app.tar").exists());
}
