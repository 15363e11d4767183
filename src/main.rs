fn main() {
    std::process::exit(tap::cli::main());
}
