//! The `reprofile` binary: everything lives in the library; see `reprofile --help`.

fn main() -> std::process::ExitCode {
    reprofile::cap_malloc_arenas();
    reprofile::cli::main()
}
