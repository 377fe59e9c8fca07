//! `dreamfarm`: the command line of the render farm.

mod cli;

fn main() -> std::process::ExitCode {
    let cli = cli::parse();
    dreamfarm_proto::logging::init(cli.log_format);
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
