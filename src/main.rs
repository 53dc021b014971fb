//! The `kafkad` binary: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

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
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kafkad: {error}");
            error.exit_code()
        }
    }
}
