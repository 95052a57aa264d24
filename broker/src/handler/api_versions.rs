//! ApiVersions: the APIs and version ranges this broker serves.

use super::{advertised_min, SUPPORTED};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::ResponseError;

fn list() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(advertised_min(*k, *lo))
                .with_max_version(*hi)
        })
        .collect()
}

pub fn handle() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(list())
}

/// The answer to an ApiVersions version we do not know: UNSUPPORTED_VERSION plus the list,
/// which the caller encodes as v0 so any client can read it.
pub fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(list())
}
