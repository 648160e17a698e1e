//! The HTTP API. (Stub: owned by the HTTP work.)
