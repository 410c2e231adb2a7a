//! `fabricks build`: project → module → OCI image archive.

use crate::cli::BuildArgs;
use crate::compile::{self, Compiled};
use crate::oci_archive::PushableImage;
use crate::progress::Step;
use crate::project::{Mode, Project};
use crate::toolchain::Target;
use crate::{provenance, push};
use anyhow::{ensure, Context, Result};
use fabricks_image::{fabricks_listen, write_archive_file, ImageOptions, ListenSpec, Reference, WasmImage};

/// Image config label naming a reactor build.
const MODE_LABEL: &str = "fabricks.io/mode";

pub fn build(args: BuildArgs) -> Result<()> {
    // Settings are checked before the (slow) compile, so a typo fails at once.
    let listen = listen_spec(&args)?;
    let target = match (args.native, project(&args)?.mode(args.mode)) {
        (true, _) => Target::Native,
        (false, Mode::Command) => Target::Wasi,
        (false, Mode::Reactor) => Target::Reactor,
    };
    let compiled = compile::compile(&args.dir, target)?;
    let options = image_options(&args, &compiled, listen)?;
    let output = match &args.output {
        Some(path) => path.clone(),
        None => compiled.build_dir.join(format!("{}.tar", default_name(&compiled))),
    };

    let step = Step::start(format!("Packing {}", options.reference));
    let module = std::fs::read(&compiled.module)
        .with_context(|| format!("reading the compiled module {}", compiled.module.display()))?;
    let image = WasmImage::build(&module, &options)?;
    write_archive_file(&image, &output)?;
    step.done(format!("Wrote {}", output.display()));

    if let Some(target) = &args.push {
        let reference: Reference = target.parse().context("in --push")?;
        let report = push::push(&PushableImage::from_image(&image), &reference, &args.registry, &args.index)?;
        return push::print_report(&report, args.json);
    }

    println!("image:  {}", image.reference());
    println!("digest: {}", image.manifest_blob().digest());
    println!("file:   {}", output.display());
    if !options.listen.is_empty() {
        println!("listen: {} ({})", options.listen, options.listen.exposed_ports().join(", "));
    }
    Ok(())
}

/// `--listen`, else `listen` of the project's fabricks.toml, else none.
fn listen_spec(args: &BuildArgs) -> Result<ListenSpec> {
    ensure!(
        !args.label.iter().any(|(key, _)| key == fabricks_listen::LABEL),
        "the label {} comes from the listen spec: give it as --listen SPEC (or `listen` in {}), \
         which also sets the image's ExposedPorts",
        fabricks_listen::LABEL,
        crate::project::FILE
    );
    project(args)?.listen_spec(&args.listen)
}

fn project(args: &BuildArgs) -> Result<Project> {
    // A missing directory is left for compile to report.
    match args.dir.is_dir() {
        true => Project::load(&args.dir),
        false => Ok(Project::default()),
    }
}

/// `<dir name>` (wasm) or `<dir name>-native`: archive file names.
fn default_name(compiled: &Compiled) -> String {
    match compiled.target {
        Target::Wasi | Target::Reactor => compiled.name.clone(),
        Target::Native => format!("{}-native", compiled.name),
    }
}

/// `localhost/<dir name>:latest`, or `:native` for a native build, so that
/// importing both does not replace one with the other.
fn default_reference(compiled: &Compiled) -> Result<Reference> {
    let reference = Reference::localhost(&compiled.name)
        .with_context(|| format!("naming the image after the directory {:?}", compiled.name))?;
    Ok(match compiled.target {
        Target::Wasi | Target::Reactor => reference,
        Target::Native => format!("{}:native", reference.name()).parse()?,
    })
}

fn image_options(args: &BuildArgs, compiled: &Compiled, listen: ListenSpec) -> Result<ImageOptions> {
    let reference = match (&args.tag, &args.push) {
        (Some(tag), _) => tag.parse().context("in -t/--tag")?,
        (None, Some(push)) => push.parse().context("in --push")?,
        (None, None) => default_reference(compiled)?,
    };
    let mut options = ImageOptions::new(reference, compiled.entrypoint());
    options.layer = args.layer.into();
    options.env = args.env.clone();
    if compiled.target == Target::Native {
        options.platform = fabricks_image::host_platform();
        // A native program binds its own ports; the SDK reads them from here.
        if !listen.is_empty() {
            options.env.push((fabricks_listen::ENV_LISTEN.to_owned(), listen.to_string()));
        }
    }
    options.labels = args.label.iter().cloned().collect();
    if compiled.target == Target::Reactor {
        // Informational: the shim tells a reactor by its exports.
        options.labels.insert(MODE_LABEL.to_owned(), "reactor".to_owned());
    }
    options.listen = listen;
    let created = fabricks_image::source_date_epoch()?;
    options.created = Some(created);
    // Given --annotation values win over what is found out.
    options.annotations = provenance::annotations(&args.dir, created);
    options.annotations.extend(args.annotation.iter().cloned());
    Ok(options)
}
