//! The interactive serial console over the WebSocket: what we type reaches the guest's shell and its
//! answer comes back (stdin piped, as a script would use it).

mod common;

use common::Cloud;

#[test]
fn console_round_trip_through_websocket() {
    let cloud = Cloud::start();
    cloud.import_tiny();
    cloud.ok(&[
        "instance", "run", "--name", "c1", "--image", "tiny", "--type", "nano", "--wait",
    ]);
    cloud.wait_console("c1", "KUMO-READY");
    // Give the console shell a moment to print its prompt.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let out = cloud.console_session("c1", None, None, b"\necho CONSOLE-$((40+2))\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "console failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("CONSOLE-42"),
        "the guest's answer did not come back:\n{stdout}"
    );
    // The same bytes are in the serial log.
    let log = cloud.wait_console("c1", "CONSOLE-42");
    assert!(log.contains("CONSOLE-42"));
    // A stopped instance has no console: a precise error, non-zero exit.
    cloud.ok(&["instance", "stop", "c1", "--force", "--wait"]);
    let out = cloud.kumo(&["instance", "console", "c1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not available"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
