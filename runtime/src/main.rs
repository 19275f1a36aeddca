fn main() -> std::process::ExitCode {
    pigeon::cli::main()
}
