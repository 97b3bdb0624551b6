//! `cargo run -p kumo-guest --example build_tiny -- <cache_dir> <out_dir>`: build the tiny guest and
//! print the QEMU arguments that boot it.

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(cache), Some(out)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: build_tiny <cache_dir> <out_dir>");
    };
    let g = kumo_guest::build_tiny(cache.as_ref(), out.as_ref())?;
    println!(
        "qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 256 -nodefaults -no-user-config \
         -display none -serial stdio -kernel {} -initrd {} -append '{}'",
        g.kernel.display(),
        g.initrd.display(),
        g.cmdline
    );
    Ok(())
}
