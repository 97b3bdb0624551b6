//! The raw-terminal guard, on a real pseudo-terminal.

use super::*;

#[test]
fn raw_attrs_clear_line_discipline() {
    // SAFETY: termios is plain data.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    t.c_lflag = libc::ECHO | libc::ICANON | libc::ISIG | libc::IEXTEN;
    t.c_iflag = libc::ICRNL | libc::IXON;
    t.c_oflag = libc::OPOST;
    let r = terminal::raw_attrs(&t);
    assert_eq!(
        r.c_lflag & (libc::ECHO | libc::ICANON | libc::ISIG | libc::IEXTEN),
        0
    );
    assert_eq!(r.c_iflag & (libc::ICRNL | libc::IXON), 0);
    assert_eq!(r.c_oflag & libc::OPOST, 0);
    assert_eq!(r.c_cflag & libc::CSIZE, libc::CS8);
    assert_eq!((r.c_cc[libc::VMIN], r.c_cc[libc::VTIME]), (1, 0));
}

/// A real pseudo-terminal pair, closed on drop.
struct Pty {
    master: libc::c_int,
    slave: libc::c_int,
}

impl Pty {
    fn open() -> Pty {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two descriptors; name/termp/winp may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        Pty { master, slave }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        // SAFETY: both descriptors are owned by this struct.
        unsafe {
            libc::close(self.slave);
            libc::close(self.master);
        }
    }
}

#[test]
fn raw_mode_guard_restores_the_terminal() {
    let pty = Pty::open();
    assert!(terminal::is_tty(pty.slave));
    let before = terminal::get_attrs(pty.slave).expect("tcgetattr");
    assert_ne!(
        before.c_lflag & libc::ICANON,
        0,
        "a fresh pty is in canonical mode"
    );
    {
        let guard = terminal::RawMode::enable(pty.slave).expect("raw mode");
        let during = terminal::get_attrs(pty.slave).expect("tcgetattr");
        assert_eq!(during.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
        assert_eq!(guard.saved().c_lflag, before.c_lflag);
    }
    let after = terminal::get_attrs(pty.slave).expect("tcgetattr");
    assert_eq!(
        (after.c_lflag, after.c_iflag, after.c_oflag, after.c_cflag),
        (
            before.c_lflag,
            before.c_iflag,
            before.c_oflag,
            before.c_cflag
        )
    );
}

#[test]
fn raw_mode_guard_restores_on_error_paths() {
    let pty = Pty::open();
    let before = terminal::get_attrs(pty.slave).expect("tcgetattr");
    let failing = || -> Result<(), String> {
        let _guard = terminal::RawMode::enable(pty.slave).map_err(|e| e.to_string())?;
        Err("the session broke".into())
    };
    assert!(failing().is_err());
    assert_eq!(
        terminal::get_attrs(pty.slave).expect("tcgetattr").c_lflag,
        before.c_lflag
    );
}

#[test]
fn raw_mode_refuses_a_non_terminal() {
    let f = tempfile::tempfile().expect("tempfile");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    assert!(!terminal::is_tty(fd));
    assert!(terminal::RawMode::enable(fd).is_err());
}
