//! Federation: the server's signing key now; key fetching, request signing and server discovery
//! come with the Server-Server API.

pub mod signing_key;
