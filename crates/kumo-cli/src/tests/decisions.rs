//! Pure decisions: wait verdicts, log offsets, console escape key, image build.

use super::*;

#[test]
fn wait_verdicts() {
    let v = |s| view(s, Some("boom"));
    assert_eq!(
        verdict(Target::Running, Some(&v(InstanceState::Running)), None),
        Verdict::Done
    );
    assert_eq!(
        verdict(Target::Running, Some(&v(InstanceState::Starting)), None),
        Verdict::KeepWaiting
    );
    assert_eq!(
        verdict(Target::Running, Some(&v(InstanceState::Pending)), None),
        Verdict::KeepWaiting
    );
    assert!(
        matches!(verdict(Target::Running, Some(&v(InstanceState::Failed)), None), Verdict::Failed(m) if m.contains("boom"))
    );
    assert!(
        matches!(verdict(Target::Running, Some(&v(InstanceState::Crashed)), None), Verdict::Failed(m) if m.contains("crashed"))
    );
    assert!(matches!(
        verdict(Target::Running, None, None),
        Verdict::Failed(_)
    ));
    assert_eq!(
        verdict(Target::Stopped, Some(&v(InstanceState::Stopping)), None),
        Verdict::KeepWaiting
    );
    assert_eq!(
        verdict(Target::Stopped, Some(&v(InstanceState::Stopped)), None),
        Verdict::Done
    );
    assert_eq!(
        verdict(Target::Gone, Some(&v(InstanceState::Deleting)), None),
        Verdict::KeepWaiting
    );
    assert_eq!(verdict(Target::Gone, None, None), Verdict::Done);
    assert!(matches!(
        verdict(Target::Running, Some(&v(InstanceState::Deleting)), None),
        Verdict::Failed(_)
    ));
    // Starting a crashed instance: the old `crashed` is not the answer until the state moves.
    assert_eq!(
        verdict(
            Target::Running,
            Some(&v(InstanceState::Crashed)),
            Some(InstanceState::Crashed)
        ),
        Verdict::KeepWaiting
    );
    assert!(matches!(
        verdict(
            Target::Running,
            Some(&v(InstanceState::Failed)),
            Some(InstanceState::Crashed)
        ),
        Verdict::Failed(_)
    ));
}

#[test]
fn log_offsets() {
    assert_eq!(
        instance::log_step(0, 100, Some(100)),
        LogStep {
            offset: 100,
            more: false
        }
    );
    assert_eq!(
        instance::log_step(0, 1 << 20, Some(3 << 20)),
        LogStep {
            offset: 1 << 20,
            more: true
        }
    );
    assert_eq!(
        instance::log_step(100, 0, Some(100)),
        LogStep {
            offset: 100,
            more: false
        }
    );
    assert_eq!(
        instance::log_step(500, 0, Some(20)),
        LogStep {
            offset: 0,
            more: true
        },
        "log recreated: start over"
    );
    assert_eq!(
        instance::log_step(500, 0, Some(0)),
        LogStep {
            offset: 0,
            more: false
        }
    );
    assert_eq!(
        instance::log_step(10, 5, None),
        LogStep {
            offset: 15,
            more: true
        }
    );
}

#[test]
fn console_escape_key() {
    assert_eq!(console::scan_input(b"ls\r", true), (&b"ls\r"[..], false));
    assert_eq!(console::scan_input(b"ab\x1dcd", true), (&b"ab"[..], true));
    assert_eq!(console::scan_input(b"\x1d", true), (&b""[..], true));
    assert_eq!(
        console::scan_input(b"ab\x1dcd", false),
        (&b"ab\x1dcd"[..], false),
        "piped input is passed through"
    );
}

#[test]
fn existing_image_decisions() {
    assert_eq!(
        image::existing_decision("tiny", None, "aa"),
        Existing::Import
    );
    assert_eq!(
        image::existing_decision("tiny", Some(&image_value("aa")), "aa"),
        Existing::Reuse
    );
    let Existing::Conflict(m) = image::existing_decision("tiny", Some(&image_value("bb")), "aa")
    else {
        panic!("conflict")
    };
    assert!(m.contains("kumo image delete tiny"), "{m}");
    let mut failed = image_value("");
    failed.state = kumo_types::ImageState::Error;
    assert_eq!(
        image::existing_decision("tiny", Some(&failed), "aa"),
        Existing::Import,
        "a failed import is replaced"
    );
    failed.state = kumo_types::ImageState::Importing;
    assert!(matches!(
        image::existing_decision("tiny", Some(&failed), "aa"),
        Existing::Conflict(m) if m.contains("is being imported")
    ));
}

#[test]
fn import_progress_lines() {
    let mut img = image_value("");
    img.state = kumo_types::ImageState::Importing;
    img.status_message = Some("downloading".into());
    assert_eq!(image::progress_line(&img), "image `tiny`: downloading");
    img.progress = Some(kumo_types::ImportProgress {
        bytes_done: 512 << 20,
        bytes_total: Some(2 << 30),
    });
    assert_eq!(
        image::progress_line(&img),
        "image `tiny`: downloading: 25% (512.0 MiB of 2.0 GiB)"
    );
    img.progress = Some(kumo_types::ImportProgress {
        bytes_done: 1536,
        bytes_total: None,
    });
    assert_eq!(
        image::progress_line(&img),
        "image `tiny`: downloading: 1.5 KiB (size unknown)"
    );
    let every = std::time::Duration::from_secs(10);
    let s = std::time::Duration::from_secs;
    assert!(image::plain_progress_due(None, "downloading", every));
    assert!(!image::plain_progress_due(
        Some(("downloading", s(3))),
        "downloading",
        every
    ));
    assert!(image::plain_progress_due(
        Some(("downloading", s(10))),
        "downloading",
        every
    ));
    assert!(image::plain_progress_due(
        Some(("downloading", s(1))),
        "storing",
        every
    ));
}

#[test]
fn sha256_covers_files_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("kernel"), dir.path().join("initrd"));
    std::fs::write(&a, b"a").expect("write");
    std::fs::write(&b, b"bc").expect("write");
    // sha256("abc"), the FIPS 180-2 test vector.
    assert_eq!(
        image::sha256_files(&[&a, &b]).expect("hash"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert!(image::sha256_files(&[&dir.path().join("missing")]).is_err());
}

#[test]
fn build_dirs() {
    assert_eq!(
        image::default_build_dirs(true, Some("/x".into()), None),
        (
            "/var/cache/kumo/tiny-build".into(),
            "/var/lib/kumo/build/tiny".into()
        )
    );
    assert_eq!(
        image::default_build_dirs(false, Some("/xdg".into()), Some("/home/u".into())),
        ("/xdg/kumo/tiny-build".into(), "/xdg/kumo/build/tiny".into())
    );
    assert_eq!(
        image::default_build_dirs(false, None, Some("/home/u".into())),
        (
            "/home/u/.cache/kumo/tiny-build".into(),
            "/home/u/.cache/kumo/build/tiny".into()
        )
    );
}
