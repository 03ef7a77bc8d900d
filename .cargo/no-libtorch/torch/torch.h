// Reached only when the real libtorch headers are missing: .cargo/config.toml puts this
// directory on CPLUS_INCLUDE_PATH, which the compiler searches after the -I directories
// torch-sys passes, so a set-up tree never sees this file.
#error "libtorch is not installed for nnmnist: run scripts/setup (scripts/nnmnist and scripts/test run it for you), then build again"
