fn main() -> std::process::ExitCode {
    duo_harness::cli::main()
}
