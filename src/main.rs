//! The `kafkad` binary: parse the command line, run it, map the outcome to an exit code.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// How long a client being destroyed on another thread as the command returns may take.
const LEFTOVER_CLIENT_WAIT: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = kafkad::cli::Cli::parse_args();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kafkad: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(kafkad::app::run(cli));
    // Dropping the runtime would wait for every blocking thread, including a consumer stuck
    // in a commit to unreachable brokers after shutdown_timeout gave up on it: do not wait.
    runtime.shutdown_background();
    let status = match outcome {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("kafkad: {error}");
            error.exit_status()
        }
    };
    // Every Kafka client is closed by now, unless a role gave up on one (a close or a sink
    // call that outlived shutdown_timeout). Exiting under a live client's threads corrupts
    // the heap (see `all_closed_within`): then leave without running the exit handlers.
    if !kafkad::client::all_closed_within(LEFTOVER_CLIENT_WAIT) {
        let _ = std::io::stdout().flush();
        // SAFETY: ends the process at once; nothing runs after it.
        unsafe { libc::_exit(i32::from(status)) }
    }
    ExitCode::from(status)
}
