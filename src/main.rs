//! The `reprofile` binary: everything lives in the library; see `reprofile --help`.

fn main() -> std::process::ExitCode {
    reprofile::cli::main()
}
