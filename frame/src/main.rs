//! The `arkham` command-line tool.

fn main() -> std::process::ExitCode {
    arkham_frame::cli::main()
}
