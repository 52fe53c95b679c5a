//! Runs one of raftctl's own commands (the `raftctl` library) against a
//! relay's local endpoint: `kubectl raft get` prints what `raftctl get`
//! prints, with the same exit codes (0 ok; 1 failed, e.g. key not found, one
//! `Error: ` line on stderr).

use crate::relay::Relay;

/// raftctl's command line for `args` through the relay at `endpoint`.
pub fn raftctl_argv(endpoint: &str, json: bool, args: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "raftctl",
        "--endpoints",
        endpoint,
        "--output",
        if json { "json" } else { "table" },
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(args.iter().cloned());
    argv
}

/// The error line: raftctl's message, and when the relay could not reach
/// the pod, why (a refused connection alone says little).
pub fn error_line(message: &str, relay_error: Option<&str>) -> String {
    match relay_error {
        Some(why) => format!("Error: {message} ({why})"),
        None => format!("Error: {message}"),
    }
}

/// Runs raftctl with `args` through `relay`; returns the exit code.
pub async fn run_raftctl(relay: &Relay, json: bool, args: &[String]) -> i32 {
    let argv = raftctl_argv(&relay.endpoint(), json, args);
    let cli = match <raftctl::Cli as clap::Parser>::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("Error: kubectl raft built an invalid raftctl command {argv:?}: {e}");
            return 2;
        }
    };
    // Failures before this command are not its own.
    let _ = relay.take_error();
    match raftctl::run(cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "{}",
                error_line(&e.to_string(), relay.take_error().as_deref())
            );
            e.exit_code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raftctl_runs_against_the_relay_only() {
        let argv = raftctl_argv("127.0.0.1:4321", true, &["get".into(), "k".into()]);
        assert_eq!(
            argv.join(" "),
            "raftctl --endpoints 127.0.0.1:4321 --output json get k"
        );
        let cli = <raftctl::Cli as clap::Parser>::try_parse_from(&argv).unwrap();
        assert_eq!(cli.endpoints, "127.0.0.1:4321");
        assert_eq!(cli.output, raftctl::OutputFormat::Json);
    }

    #[test]
    fn the_error_line_names_the_port_forward_failure() {
        assert_eq!(
            error_line(
                "no node reachable",
                Some("cannot open a stream to pod demo-0 port 7000 (port-forward): 403")
            ),
            "Error: no node reachable (cannot open a stream to pod demo-0 port 7000 (port-forward): 403)"
        );
        assert_eq!(
            error_line("key \"k\" not found", None),
            "Error: key \"k\" not found"
        );
    }
}
