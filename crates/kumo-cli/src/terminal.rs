//! Raw terminal mode for `kumo instance console`, restored on drop (including on error and panic
//! unwinding).
//!
//! [`raw_attrs`] computes the raw settings from the current ones (pure, the same flags as
//! `cfmakeraw(3)`); [`RawMode`] applies them to a file descriptor and puts the saved settings back when
//! dropped.

use std::io;
use std::os::fd::RawFd;

/// True when `fd` is a terminal.
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// The raw-mode version of `t`: no echo, no line buffering, no signal keys (Ctrl-C goes to the guest),
/// no input/output translation, 8-bit characters, reads return after one byte.
pub fn raw_attrs(t: &libc::termios) -> libc::termios {
    let mut r = *t;
    r.c_iflag &= !(libc::IGNBRK
        | libc::BRKINT
        | libc::PARMRK
        | libc::ISTRIP
        | libc::INLCR
        | libc::IGNCR
        | libc::ICRNL
        | libc::IXON);
    r.c_oflag &= !libc::OPOST;
    r.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
    r.c_cflag &= !(libc::CSIZE | libc::PARENB);
    r.c_cflag |= libc::CS8;
    r.c_cc[libc::VMIN] = 1;
    r.c_cc[libc::VTIME] = 0;
    r
}

/// Read the terminal settings of `fd`.
pub fn get_attrs(fd: RawFd) -> io::Result<libc::termios> {
    // SAFETY: termios is plain data; tcgetattr fully initialises it on success.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, writable termios.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(t)
}

/// Apply terminal settings to `fd` (after pending output is written).
pub fn set_attrs(fd: RawFd, t: &libc::termios) -> io::Result<()> {
    // SAFETY: `t` points to a valid termios.
    if unsafe { libc::tcsetattr(fd, libc::TCSADRAIN, t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// While alive, `fd` is in raw mode; dropping it restores the settings saved at creation.
#[derive(Debug)]
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Put `fd` into raw mode. Fails (leaving it unchanged) if `fd` is not a terminal.
    pub fn enable(fd: RawFd) -> io::Result<RawMode> {
        let saved = get_attrs(fd)?;
        set_attrs(fd, &raw_attrs(&saved))?;
        Ok(RawMode { fd, saved })
    }

    /// The settings that will be restored.
    pub fn saved(&self) -> &libc::termios {
        &self.saved
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Best effort: there is nothing useful to do if the terminal went away.
        let _ = set_attrs(self.fd, &self.saved);
    }
}
