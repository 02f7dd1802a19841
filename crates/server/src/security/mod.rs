//! Security by default: paths confined to their folders ([`confine`]), the CSRF origin check
//! and CORS headers, and bounded request bodies (size and JSON depth).

mod body;
mod origin;
mod paths;

pub(crate) use body::{parse_json, JsonBody, RawBody};
pub(crate) use origin::{cors_headers, origin_guard};
pub use paths::{confine, PathError};
