//! The `visor` binary: see `visor --help`.

fn main() -> std::process::ExitCode {
    visor::cli::main()
}
