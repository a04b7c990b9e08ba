fn main() {
    std::process::exit(hanode::cli::main());
}
