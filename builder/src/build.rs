//! `fabricks build`: project → module → OCI image archive.

use crate::cli::BuildArgs;
use crate::compile::{self, Compiled};
use crate::progress::Step;
use anyhow::{Context, Result};
use fabricks_image::{write_archive_file, ImageOptions, Reference, WasmImage};

pub fn build(args: BuildArgs) -> Result<()> {
    let compiled = compile::compile(&args.dir)?;
    let options = image_options(&args, &compiled)?;
    let output = match &args.output {
        Some(path) => path.clone(),
        None => compiled.build_dir.join(format!("{}.tar", compiled.name)),
    };

    let step = Step::start(format!("Packing {}", options.reference));
    let module = std::fs::read(&compiled.module)
        .with_context(|| format!("reading the compiled module {}", compiled.module.display()))?;
    let image = WasmImage::build(&module, &options)?;
    write_archive_file(&image, &output)?;
    step.done(format!("Wrote {}", output.display()));

    println!("image:  {}", image.reference());
    println!("digest: {}", image.manifest_blob().digest());
    println!("file:   {}", output.display());
    Ok(())
}

fn image_options(args: &BuildArgs, compiled: &Compiled) -> Result<ImageOptions> {
    let reference = match &args.tag {
        Some(tag) => tag.parse().context("in -t/--tag")?,
        None => Reference::localhost(&compiled.name)
            .with_context(|| format!("naming the image after the directory {:?}", compiled.name))?,
    };
    let mut options = ImageOptions::new(reference, compiled.entrypoint());
    options.layer = args.layer.into();
    options.env = args.env.clone();
    options.labels = args.label.iter().cloned().collect();
    options.annotations = args.annotation.iter().cloned().collect();
    Ok(options)
}
