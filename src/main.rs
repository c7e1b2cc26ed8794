//! The `ecoboot` binary: everything lives in the library.

fn main() {
    std::process::exit(ecoboot::run(std::env::args_os()));
}
