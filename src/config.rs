//! Configuration from environment variables and command-line flags. (Stub.)
