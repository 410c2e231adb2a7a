//! The image model end to end in-process: payload trees, node-platform entries, the one reader
//! (archives, a source standing in for a registry, the CNCF wasm artifact layout) and taking
//! the module back out.

use fabricks_image::oci_spec::image::{Arch, Descriptor, Os, Platform, PlatformBuilder};
use fabricks_image::{
    index, media, read_archive_file, read_image, sha256, write_archive, write_archive_file, ArchiveSource, Blob,
    EntryKind, Image, ImageOptions, LayerKind, Payload, Reference, Source, Tree, Want,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

const MODULE: &[u8] = b"\0asm\x01\0\0\0\0\x06\x04test\x2a";

fn reference() -> Reference {
    "localhost/app:1".parse().unwrap()
}

fn options(layer: LayerKind) -> ImageOptions {
    let mut options = ImageOptions::new(reference());
    options.layer = layer;
    options.created = Some(1_700_000_000);
    options
}

fn linux(arch: &str) -> Platform {
    PlatformBuilder::default().os(Os::Linux).architecture(Arch::from(arch)).build().unwrap()
}

fn module_image(layer: LayerKind, node_platforms: &[&str]) -> Image {
    let mut options = options(layer);
    options.node_platforms = node_platforms.iter().map(|a| linux(a)).collect();
    Image::build(&Payload::file("/app.wasm", MODULE.to_vec()), &options).unwrap()
}

fn json_of(data: &[u8]) -> Value {
    serde_json::from_slice(data).unwrap()
}

/// Path, mode, mtime, kind and content of every entry of a gzip tar.
fn layer_entries(layer: &Blob) -> Vec<(String, u32, u64, tar::EntryType, Vec<u8>)> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer.data()).read_to_end(&mut tar).unwrap();
    let mut archive = tar::Archive::new(tar.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            (path, header.mode().unwrap(), header.mtime().unwrap(), header.entry_type(), data)
        })
        .collect()
}

fn app_bundle() -> Payload {
    let mut tree = Tree::new();
    tree.add_file("managed/System.Private.CoreLib.dll", b"MZcore".to_vec(), false).unwrap();
    tree.add_file("dotnet.wasm", MODULE.to_vec(), false).unwrap();
    tree.add_file("managed/App.dll", b"MZapp".to_vec(), false).unwrap();
    tree.add_file("App.runtimeconfig.json", b"{}".to_vec(), false).unwrap();
    tree.add_dir("tmp").unwrap();
    Payload::Tree {
        root: "/app".into(),
        tree,
        entrypoint: vec!["/app/dotnet.wasm".into(), "App".into()],
        args: vec!["--verbose".into()],
        workdir: Some("/app".into()),
    }
}

#[test]
fn a_tree_payload_is_one_sorted_reproducible_layer_under_its_root() {
    let mut options = options(LayerKind::Tar);
    options.env = vec![("DOTNET_ROOT".into(), "/app".into())];
    let image = Image::build(&app_bundle(), &options).unwrap();
    let entries = layer_entries(&image.layers()[0]);
    let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "app/",
            "app/managed/",
            "app/tmp/",
            "app/App.runtimeconfig.json",
            "app/dotnet.wasm",
            "app/managed/App.dll",
            "app/managed/System.Private.CoreLib.dll"
        ]
    );
    for (path, mode, mtime, kind, _) in &entries {
        assert_eq!(*mtime, 1_700_000_000, "{path}");
        let expected = if kind.is_dir() { 0o755 } else { 0o644 };
        assert_eq!(*mode, expected, "{path}");
        assert!(kind.is_dir() || kind.is_file(), "{path} is neither a file nor a directory");
    }
    let config = image.config();
    assert_eq!(config.entrypoint, ["/app/dotnet.wasm", "App"]);
    assert_eq!(config.cmd, ["--verbose"]);
    assert_eq!(config.working_dir.as_deref(), Some("/app"));
    assert_eq!(config.env, ["DOTNET_ROOT=/app"]);
    assert_eq!(config.labels[fabricks_image::LABEL_WASM_KIND], "module");
    // The same tree added in another order gives the same digest.
    let again = Image::build(&app_bundle(), &options).unwrap();
    assert_eq!(again.manifest_blob().digest(), image.manifest_blob().digest());
    // The module comes back out of the tar by the entrypoint.
    assert_eq!(image.module().unwrap().entrypoint, "/app/dotnet.wasm");
    assert_eq!(image.module().unwrap().data, MODULE);
}

#[test]
fn a_tree_read_from_disk_packs_the_same_and_refuses_links() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("managed")).unwrap();
    std::fs::write(dir.path().join("dotnet.wasm"), MODULE).unwrap();
    std::fs::write(dir.path().join("managed/App.dll"), b"MZapp").unwrap();
    let payload = |tree| Payload::Tree {
        root: "/app".into(),
        tree,
        entrypoint: vec!["/app/dotnet.wasm".into()],
        args: vec![],
        workdir: None,
    };
    let image = Image::build(&payload(Tree::from_dir(dir.path()).unwrap()), &options(LayerKind::Tar)).unwrap();
    let paths: Vec<String> = layer_entries(&image.layers()[0]).into_iter().map(|e| e.0).collect();
    assert_eq!(paths, ["app/", "app/managed/", "app/dotnet.wasm", "app/managed/App.dll"]);

    std::os::unix::fs::symlink("../../etc", dir.path().join("managed/etc")).unwrap();
    let err = Tree::from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
}

#[test]
fn a_tree_goes_in_a_tar_layer_and_its_entrypoint_must_be_wasm() {
    let err = Image::build(&app_bundle(), &options(LayerKind::Wasm)).unwrap_err().to_string();
    assert!(err.contains("tar layer"), "{err}");
    let mut bundle = app_bundle();
    if let Payload::Tree { entrypoint, .. } = &mut bundle {
        entrypoint[0] = "/app/managed/App.dll".into();
    }
    let err = Image::build(&bundle, &options(LayerKind::Tar)).unwrap_err().to_string();
    assert!(err.contains("/app/managed/App.dll does not start with the WebAssembly magic"), "{err}");
}

#[test]
fn a_native_tree_is_a_linux_image_without_node_entries() {
    let mut tree = Tree::new();
    tree.add_file("usr/local/bin/tool", b"\x7fELFtool".to_vec(), true).unwrap();
    tree.add_file("lib/x86_64-linux-gnu/libc.so.6", b"\x7fELFlibc".to_vec(), true).unwrap();
    let payload = Payload::Tree {
        root: "/".into(),
        tree,
        entrypoint: vec!["/usr/local/bin/tool".into()],
        args: vec![],
        workdir: None,
    };
    let mut options = options(LayerKind::Tar);
    options.platform = fabricks_image::host_platform();
    options.node_platforms = vec![linux("amd64")];
    let image = Image::build(&payload, &options).unwrap();
    assert!(!image.is_wasm());
    assert_eq!(image.entries().len(), 1);
    assert_eq!(image.config().os, "linux");
    assert!(image.config().labels.is_empty(), "no wasm kind on a native image");
    let entries = layer_entries(&image.layers()[0]);
    let tool = entries.iter().find(|e| e.0 == "usr/local/bin/tool").unwrap();
    assert_eq!(tool.1, 0o755);
    assert_eq!(entries[0].0, "lib/");
}

#[test]
fn a_tar_layer_gets_a_manifest_per_node_platform_with_that_platform_in_its_config() {
    let image = module_image(LayerKind::Tar, &["amd64", "arm64"]);
    let entries = image.entries();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].descriptor, image.manifest_descriptor());
    let own = json_of(image.manifest_blob().data());
    for (entry, arch) in entries[1..].iter().zip(["amd64", "arm64"]) {
        let platform = entry.descriptor.platform().clone().unwrap();
        assert_eq!(platform.architecture().to_string(), arch);
        let manifest = json_of(entry.manifest.data());
        assert_eq!(manifest["layers"], own["layers"], "the layer is shared");
        let config = entry.config.clone().unwrap();
        assert_eq!(manifest["config"]["digest"], config.digest().to_string());
        let config = json_of(config.data());
        assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some(arch)));
        assert_eq!(config["rootfs"], json_of(image.config_blob().data())["rootfs"]);
        assert_eq!(entry.descriptor.digest(), &sha256(entry.manifest.data()));
        assert_eq!(entry.descriptor.annotations().clone().unwrap()[index::ANNOTATION_MODULE_PLATFORM], "wasi/wasm");
        assert_eq!(EntryKind::of(&entry.descriptor), EntryKind::WasmForNodes);
    }
    // Upload order: config, layer, then the two node configs.
    let blobs = image.blobs();
    assert_eq!(blobs.len(), 4);
    assert_eq!(blobs[0], image.config_blob());
}

#[test]
fn a_wasm_layer_lists_its_own_manifest_again() {
    let image = module_image(LayerKind::Wasm, &["amd64", "arm64"]);
    let entries = image.entries();
    assert_eq!(entries.len(), 3);
    for entry in &entries[1..] {
        assert_eq!(entry.descriptor.digest(), image.manifest_blob().digest());
        assert!(entry.config.is_none());
    }
    assert_eq!(image.blobs().len(), 2);
}

#[test]
fn the_index_is_stable_and_lists_every_entry_with_the_manifest_annotations() {
    let mut options = options(LayerKind::Tar);
    options.node_platforms = vec![linux("amd64"), linux("arm64")];
    options.annotations = BTreeMap::from([("org.opencontainers.image.created".into(), "x".into())]);
    let image = Image::build(&Payload::file("/app.wasm", MODULE.to_vec()), &options).unwrap();
    let index = image.index().unwrap();
    assert_eq!(index, image.index().unwrap());
    let document = json_of(index.data());
    assert_eq!(document["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(document["annotations"]["org.opencontainers.image.created"], "x");
    let platforms: Vec<String> = document["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap())
        })
        .collect();
    assert_eq!(platforms, ["wasi/wasm", "linux/amd64", "linux/arm64"]);
}

#[test]
fn an_archive_reads_back_into_the_same_image() {
    for layer in [LayerKind::Tar, LayerKind::Wasm] {
        let image = module_image(layer, &[]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.tar");
        write_archive_file(&image, &path).unwrap();
        let read = read_archive_file(&path).unwrap();
        assert_eq!(read.reference(), image.reference());
        assert_eq!(read.manifest_blob(), image.manifest_blob());
        assert_eq!(read.config_blob(), image.config_blob());
        assert_eq!(read.layers(), image.layers());
        assert_eq!(read.manifest_descriptor(), image.manifest_descriptor(), "no archive annotations kept");
        assert_eq!(read.module().unwrap().data, MODULE, "{layer}");
        assert_eq!(read.module().unwrap().entrypoint, "/app.wasm", "{layer}");
        // Listing it for nodes afterwards gives what the build would have.
        let mut read = read;
        read.list_for_nodes(&[linux("amd64")]).unwrap();
        assert_eq!(read.index().unwrap(), module_image(layer, &["amd64"]).index().unwrap());
    }
}

#[test]
fn a_gzipped_archive_reads_too_and_a_corrupt_blob_is_named() {
    let image = module_image(LayerKind::Tar, &[]);
    let plain = write_archive(&image, Vec::new()).unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gzip, &plain).unwrap();
    let mut source = ArchiveSource::from_bytes(&gzip.finish().unwrap()).unwrap();
    let read = read_image(&mut source, reference(), Want::Any).unwrap();
    assert_eq!(read.manifest_blob(), image.manifest_blob());

    // Same size, other content: the layer no longer matches its digest.
    let layer = &image.layers()[0];
    let mut files = archive_files(&plain);
    let path = format!("blobs/sha256/{}", layer.digest().digest());
    files.get_mut(&path).unwrap()[20] ^= 0xff;
    let err = format!("{:#}", read_image(&mut Memory::new(files, None), reference(), Want::Any).unwrap_err());
    assert!(err.contains("corrupt") && err.contains(&layer.digest().to_string()), "{err}");
}

/// Every file of an image-layout tar.
fn archive_files(archive: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut files = HashMap::new();
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(entry.path().unwrap().to_string_lossy().into_owned(), data);
    }
    files
}

/// A registry stand-in: documents by digest, the top by a name, and a log of what was fetched.
struct Memory {
    files: HashMap<String, Vec<u8>>,
    top: Option<Vec<u8>>,
    fetched: Vec<String>,
}

impl Memory {
    fn new(files: HashMap<String, Vec<u8>>, top: Option<Vec<u8>>) -> Memory {
        Memory { files, top, fetched: Vec::new() }
    }

    fn with(blobs: &[&Blob], top: &Blob) -> Memory {
        let files =
            blobs.iter().map(|b| (format!("blobs/sha256/{}", b.digest().digest()), b.data().to_vec())).collect();
        Memory::new(files, Some(top.data().to_vec()))
    }

    fn get(&mut self, descriptor: &Descriptor) -> anyhow::Result<Vec<u8>> {
        self.fetched.push(descriptor.media_type().to_string());
        let path = format!("blobs/sha256/{}", descriptor.digest().digest());
        self.files.get(&path).cloned().ok_or_else(|| anyhow::anyhow!("no {path}"))
    }
}

impl Source for Memory {
    fn top(&mut self) -> anyhow::Result<(Option<String>, Vec<u8>)> {
        match &self.top {
            Some(top) => Ok((None, top.clone())),
            None => Ok((Some(media::INDEX_TYPES[0].to_owned()), self.files["index.json"].clone())),
        }
    }
    fn manifest(&mut self, descriptor: &Descriptor) -> anyhow::Result<Vec<u8>> {
        self.get(descriptor)
    }
    fn blob(&mut self, descriptor: &Descriptor) -> anyhow::Result<Vec<u8>> {
        self.get(descriptor)
    }
}

#[test]
fn a_pushed_index_reads_as_its_wasm_image() {
    let image = module_image(LayerKind::Tar, &["amd64", "arm64"]);
    let mut all: Vec<&Blob> = image.blobs();
    let entries = image.entries();
    all.extend(entries.iter().map(|e| &e.manifest));
    let index = image.index().unwrap();
    let read = read_image(&mut Memory::with(&all, &index), reference(), Want::Wasm).unwrap();
    assert_eq!(read.manifest_blob(), image.manifest_blob());
    assert!(read.is_wasm());
    assert_eq!(read.platform().unwrap().os(), &Os::Other("wasi".into()));
}

#[test]
fn a_linux_image_is_refused_for_run_before_its_layers_are_fetched() {
    let mut tree = Tree::new();
    tree.add_file("pause", b"\x7fELFpause".to_vec(), true).unwrap();
    let payload =
        Payload::Tree { root: "/".into(), tree, entrypoint: vec!["/pause".into()], args: vec![], workdir: None };
    let mut options = options(LayerKind::Tar);
    options.platform = linux("amd64");
    let image = Image::build(&payload, &options).unwrap();
    let mut source = Memory::with(&image.blobs(), image.manifest_blob());
    let err = read_image(&mut source, reference(), Want::Wasm).unwrap_err().to_string();
    assert_eq!(err, "localhost/app:1 is not a wasm image (platform linux/amd64)");
    assert_eq!(source.fetched, ["application/vnd.oci.image.config.v1+json"], "only the config was fetched");
    // An index of linux images names its platforms.
    let mut linux_index = image.clone();
    linux_index.list_for_nodes(&[]).unwrap();
    let index = linux_index.index().unwrap();
    let mut all = image.blobs();
    all.push(image.manifest_blob());
    let err = read_image(&mut Memory::with(&all, &index), reference(), Want::Wasm).unwrap_err().to_string();
    assert!(err.contains("is not a wasm image (platform linux/amd64)"), "{err}");
    // A push takes it all the same.
    assert!(read_image(&mut Memory::with(&all, &index), reference(), Want::Any).is_ok());
}

/// The CNCF wasm OCI artifact layout as `wkg`/`oras` push it: a wasm config, one
/// `application/wasm` layer, no index.
fn cncf_artifact(data: &[u8], os: &str) -> (Blob, Blob, Blob) {
    let mut descriptor = Blob::new(media::WASM_LAYER.into(), data.to_vec()).descriptor().clone();
    let title = HashMap::from([("org.opencontainers.image.title".to_owned(), "hello.wasm".to_owned())]);
    descriptor.set_annotations(Some(title));
    let layer = Blob::verified(&descriptor, data.to_vec()).unwrap();
    let config = json!({
        "created": "2024-05-01T00:00:00Z", "architecture": "wasm", "os": os,
        "layerDigests": [layer.digest().to_string()],
        "component": {"exports": ["wasi:cli/run@0.2.0"], "imports": []}
    });
    let config = Blob::new(media::WASM_CONFIG_V0.into(), serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/wasm",
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    });
    let manifest =
        Blob::new(fabricks_image::oci_spec::image::MediaType::ImageManifest, serde_json::to_vec(&manifest).unwrap());
    (config, layer, manifest)
}

#[test]
fn the_cncf_wasm_artifact_layout_reads_runs_and_lists_for_nodes() {
    let component = b"\0asm\x0d\0\x01\0component";
    let (config, layer, manifest) = cncf_artifact(component, "wasip2");
    let mut source = Memory::with(&[&config, &layer], &manifest);
    let mut image = read_image(&mut source, reference(), Want::Wasm).unwrap();
    assert!(image.is_wasm());
    assert_eq!(image.config().platform_name(), "wasip2/wasm");
    let module = image.module().unwrap();
    assert_eq!((module.entrypoint.as_str(), module.data.as_slice()), ("/hello.wasm", &component[..]));
    // Pushed again, it is listed under the node platforms as it is (no diff_ids to rewrite).
    image.list_for_nodes(&[linux("amd64")]).unwrap();
    let entries = image.entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].manifest, *image.manifest_blob());
    assert_eq!(image.blobs().len(), 2);
}

#[test]
fn a_cncf_artifact_in_an_oci_layout_archive_reads_for_push() {
    let (config, layer, manifest) = cncf_artifact(MODULE, "wasip1");
    let mut descriptor = manifest.descriptor().clone();
    descriptor
        .set_annotations(Some(HashMap::from([("org.opencontainers.image.ref.name".to_owned(), "v1".to_owned())])));
    let index = json!({"schemaVersion": 2, "manifests": [descriptor]});
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &serde_json::to_vec(&index).unwrap());
    for blob in [&config, &layer, &manifest] {
        add(&format!("blobs/sha256/{}", blob.digest().digest()), blob.data());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.tar");
    std::fs::write(&path, builder.into_inner().unwrap()).unwrap();
    let image = read_archive_file(&path).unwrap();
    assert_eq!(image.reference().to_string(), "localhost/hello:latest");
    assert_eq!(image.manifest_blob().data(), manifest.data());
    assert_eq!(image.module().unwrap().data, MODULE);
}

#[test]
fn a_nested_index_as_ctr_export_writes_it_is_followed() {
    let image = module_image(LayerKind::Wasm, &[]);
    let inner = image.index().unwrap();
    let outer = json!({"schemaVersion": 2, "mediaType": media::INDEX_TYPES[0], "manifests": [inner.descriptor()]});
    let outer = Blob::new(fabricks_image::oci_spec::image::MediaType::ImageIndex, serde_json::to_vec(&outer).unwrap());
    let mut all = image.blobs();
    all.push(image.manifest_blob());
    all.push(&inner);
    let read = read_image(&mut Memory::with(&all, &outer), reference(), Want::Wasm).unwrap();
    assert_eq!(read.manifest_blob(), image.manifest_blob());
}

#[test]
fn long_paths_survive_the_layer() {
    let deep = format!("{}/App.resources.dll", ["managed"; 20].join("/"));
    assert!(deep.len() > 100, "past the 100 bytes of a plain tar name");
    let mut tree = Tree::new();
    tree.add_file("dotnet.wasm", MODULE.to_vec(), false).unwrap();
    tree.add_file(&deep, b"MZ".to_vec(), false).unwrap();
    let payload = Payload::Tree {
        root: "/app".into(),
        tree,
        entrypoint: vec!["/app/dotnet.wasm".into()],
        args: vec![],
        workdir: None,
    };
    let image = Image::build(&payload, &options(LayerKind::Tar)).unwrap();
    let entries = layer_entries(&image.layers()[0]);
    let file = entries.iter().find(|e| e.0 == format!("app/{deep}")).expect("the long path is in the layer");
    assert_eq!(file.4, b"MZ");
}
